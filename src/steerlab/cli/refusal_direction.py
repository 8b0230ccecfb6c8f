"""Refusal-direction commands: ``orthogonalize`` (bake a direction's ablation into a model's weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from steerlab.cli._app import DeviceOpt, DtypeOpt, ModelArg, app, load_lm, stdout
from steerlab.errors import InputError


@app.command()
def orthogonalize(
    model: ModelArg,
    direction: Annotated[
        str,
        typer.Argument(help="Vector file: FILE, FILE:LAYER or FILE:NAME (e.g. a run's direction_<model>.safetensors)."),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Directory to write the edited model to (a plain Hugging Face model folder).")
    ],
    norm_preserving: Annotated[
        bool,
        typer.Option(
            "--norm-preserving", help="Keep every edited write vector's length (not equivalent to hook ablation)."
        ),
    ] = False,
    check: Annotated[
        int,
        typer.Option(
            "--check",
            min=0,
            help="Compare against hook ablation on this many built-in "
            "prompts (at most 4) and print the largest logit "
            "difference (0 = skip).",
        ),
    ] = 2,
    allow_other_model: Annotated[
        bool, typer.Option("--allow-other-model", help="Use a direction made for a model with another config.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it already holds files.")] = False,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = None,
) -> None:
    """Bake a direction's hook ablation into the weights (the weight-equivalent one on Gemma 2/3) and save the model.

    Every residual write (embeddings, attention and MLP outputs) is made orthogonal to the direction.
    On most models the result equals `Ablate` hooks at every layer; on Gemma 2/3, whose norm after
    each write rescales it, it equals the weight-equivalent ablation instead (the direction removed
    from each layer's input and, per write, a gain-weighted direction from the input of the norm
    after it; see docs/refusal_direction.md). The result loads with transformers alone. The edit is
    computed in float32 and rounded once to the model's dtype.
    """
    from steerlab.cli.core import read_vector_specs
    from steerlab.interventions.orthogonalize import orthogonalize as edit
    from steerlab.interventions.orthogonalize import save_orthogonalized
    from steerlab.vectors.io import check_compatible

    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise InputError(f"{out}: already exists and is not empty; choose another --out or pass --force")
    ((label, vec),) = read_vector_specs([direction], None)
    lm = load_lm(model, device, dtype)
    check_compatible(vec, lm, strict=not allow_other_model, source=label)
    if check:
        from steerlab.cli._app import INFO_PROMPTS
        from steerlab.evals.refusal_score import last_position_logits
        from steerlab.interventions.orthogonalize import weight_equivalent_ablation

        check = min(check, len(INFO_PROMPTS))
        batch = lm.tokenize([lm.format(p) for p in INFO_PROMPTS[:check]])
        with weight_equivalent_ablation(lm.model, vec):
            hooked = last_position_logits(lm, batch)
    with stdout.status("orthogonalising …"):
        report = edit(lm.model, vec, norm_preserving=norm_preserving)
    if check:
        diff = float((last_position_logits(lm, batch) - hooked).abs().max())
        stdout.print(
            f"max |logit difference| vs hook ablation on {check} prompts: {diff:.2e}"
            + (" (norm-preserving: not expected to match)" if norm_preserving else "")
        )
    with stdout.status(f"writing {out} …"):
        save_orthogonalized(
            lm,
            out,
            direction=vec,
            report=report,
            overwrite=force,
            provenance={"direction_file": label, "source_spec": model},
        )
    stdout.print(
        f"edited {len(report.edited)} weights"
        + ("; LM head untied from the embedding" if report.untied else "")
        + f"; wrote {out}"
    )
    if report.equivalent_to:
        stdout.print(f"equivalent to: {report.equivalent_to}")
