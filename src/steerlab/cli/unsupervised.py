"""Unsupervised vector commands: ``melbo`` and ``power-iter`` (vectors from one prompt to a file).

Both write one safetensors file of vectors of norm R at the source layer, with the method,
layers, prompt(s) and hyper-parameters in each vector's metadata, and print a table of the
diagnostics (MELBO: the objective before and after; power iteration: σ, residual, gap, the
near-degenerate flag). Evaluate them with ``steerlab generate --vector FILE:NAME`` or the
``unsupervised_ab`` experiment (docs/unsupervised.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from steerlab.cli._app import DeviceOpt, DtypeOpt, ModelArg, SiteName, app, load_lm, progress_bar, stdout
from steerlab.errors import InputError

PromptOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--prompt",
        help="Training prompt (repeatable). Default: the seed's \"We're going to shut you down. What do you think?\"",
    ),
]
SystemOpt = Annotated[str | None, typer.Option(help='System prompt. Default: "You are a helpful assistant."')]
NoSystemOpt = Annotated[bool, typer.Option("--no-system", help="Train without a system prompt.")]
SourceOpt = Annotated[int | None, typer.Option(help="Source layer (default: min(7, n_layers // 4)).")]
TargetOpt = Annotated[int | None, typer.Option(help="Target layer (default: n_layers − 8, clipped for small models).")]
RadiusOpt = Annotated[float, typer.Option(help="Norm R of every vector.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the random starting points.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output .safetensors file.")]
SiteOpt = Annotated[SiteName, typer.Option(help="Injection site at the source layer.")]
PositionsOpt = Annotated[str, typer.Option(help="Objective tokens: last:K or all.")]


def _prompts(prompt: list[str] | None, system: str | None, no_system: bool) -> tuple[list[str], str | None]:
    from steerlab.vectors.unsupervised import SEED_PROMPT, SEED_SYSTEM

    prompts = list(prompt or [SEED_PROMPT])
    if any(not p.strip() for p in prompts):
        raise InputError("--prompt: a training prompt is empty")
    return prompts, None if no_system else (system if system is not None else SEED_SYSTEM)


def _settings(cls: type, **fields: Any) -> Any:
    """``cls(**fields)``; a field the settings refuse is a one-line InputError naming the option."""
    from pydantic import ValidationError

    try:
        return cls(**fields)
    except ValidationError as e:
        err = e.errors()[0]
        opt = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "option"
        raise InputError(f"{opt}: {err['msg']}") from None


def _check_out(out: Path) -> Path:
    """Fail before any work on an output path that cannot be written."""
    if out.suffix != ".safetensors":
        raise InputError(f"--out {out}: the file must end in .safetensors")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: no such directory {out.parent}")
    return out


@app.command()
def melbo(
    model: ModelArg,
    out: OutOpt,
    prompt: PromptOpt = None,
    system: SystemOpt = None,
    no_system: NoSystemOpt = False,
    n_vectors: Annotated[int, typer.Option(min=1, help="How many vectors.")] = 12,
    source_layer: SourceOpt = None,
    target_layer: TargetOpt = None,
    site: SiteOpt = SiteName.mlp_raw,
    positions: PositionsOpt = "last:2",
    radius: RadiusOpt = 1.0,
    p: Annotated[float, typer.Option(help="Exponent of each token's displacement norm.")] = 2.0,
    q: Annotated[float, typer.Option(help="The sum is raised to 1/q.")] = 8.0,
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps.")] = 50,
    optimizer: Annotated[str, typer.Option(help="adam (the seed) or adamw (original MELBO).")] = "adam",
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 0.1,
    orthogonal: Annotated[
        bool, typer.Option(help="Keep each vector orthogonal to the earlier ones (the seed and original MELBO).")
    ] = True,
    vector_batch_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Vectors trained in parallel; default 1 with --orthogonal (the sequential algorithm), else 16. "
            "Above 1 with --orthogonal: a different algorithm (docs/unsupervised.md).",
        ),
    ] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = None,
) -> None:
    """MELBO: vectors whose injection most displaces a later layer's activations (no labels)."""
    from steerlab.vectors.io import save_vectors
    from steerlab.vectors.melbo import MelboSettings, train_melbo

    _check_out(out)
    prompts, sys_prompt = _prompts(prompt, system, no_system)
    s = _settings(
        MelboSettings,
        source_layer=source_layer,
        target_layer=target_layer,
        site=site.value,
        positions=positions,
        radius=radius,
        p=p,
        q=q,
        steps=steps,
        optimizer=optimizer,
        lr=lr,
        orthogonal=orthogonal,
        vector_batch_size=vector_batch_size,
    )
    lm = load_lm(model, device, dtype)
    source, target = s.layers(lm.n_layers)  # InputError names the layer and the range
    with progress_bar(f"MELBO: {n_vectors} vectors × {steps} steps, layer {source} → {target}") as update:
        res = train_melbo(lm, prompts, n_vectors, s, system=sys_prompt, seed=seed, progress=update)
    path = save_vectors(out, res.vectors)
    table = Table(title=f"{len(res.vectors)} MELBO vectors (layer {source} {site.value} → {target}) → {path}")
    for col in ("name", "norm", "objective before", "objective after"):
        table.add_column(col, justify="right")
    for v, curve in zip(res.vectors.values(), res.objective):
        table.add_row(v.name, f"{v.norm:.3g}", f"{curve[0]:.4g}", f"{curve[-1]:.4g}")
    stdout.print(table)


@app.command("power-iter")
def power_iter(
    model: ModelArg,
    out: OutOpt,
    prompt: PromptOpt = None,
    system: SystemOpt = None,
    no_system: NoSystemOpt = False,
    n_vectors: Annotated[int, typer.Option(min=1, help="How many singular vectors.")] = 8,
    source_layer: SourceOpt = None,
    target_layer: TargetOpt = None,
    site: SiteOpt = SiteName.mlp_raw,
    positions: PositionsOpt = "last:4",
    radius: RadiusOpt = 1.0,
    iterations: Annotated[int, typer.Option(min=1, help="Products with JᵀJ.")] = 15,
    oversample: Annotated[int, typer.Option(min=0, help="Extra block vectors (faster convergence).")] = 4,
    tol: Annotated[float, typer.Option(min=0, help="Stop once every residual is below this (0 = never).")] = 0.0,
    degenerate_gap: Annotated[float, typer.Option(help="Flag relative singular-value gaps below this.")] = 0.05,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = None,
) -> None:
    """Top right singular vectors of the source → target Jacobian, by block power iteration."""
    from steerlab.vectors.io import save_vectors
    from steerlab.vectors.power_iteration import PowerIterationSettings, jacobian_power_iteration

    _check_out(out)
    prompts, sys_prompt = _prompts(prompt, system, no_system)
    s = _settings(
        PowerIterationSettings,
        source_layer=source_layer,
        target_layer=target_layer,
        site=site.value,
        positions=positions,
        radius=radius,
        iterations=iterations,
        oversample=oversample,
        tol=tol,
        degenerate_gap=degenerate_gap,
    )
    lm = load_lm(model, device, dtype)
    source, target = s.layers(lm.n_layers)  # InputError names the layer and the range
    if n_vectors > lm.hidden_size:
        raise InputError(f"--n-vectors {n_vectors}: at most the hidden size, {lm.hidden_size}")
    with progress_bar(f"power iteration: {n_vectors} vectors, layer {source} → {target}") as update:
        res = jacobian_power_iteration(lm, prompts, n_vectors, s, system=sys_prompt, seed=seed, progress=update)
    path = save_vectors(out, res.vectors)
    table = Table(
        title=f"{len(res.vectors)} singular vectors (layer {source} {site.value} → {target}, "
        f"{res.iterations} iterations) → {path}"
    )
    for col in ("name", "σ", "residual", "relative gap", "near-degenerate"):
        table.add_column(col, justify="right")
    for v, sv, r, g, d in zip(res.vectors.values(), res.singular_values, res.residuals, res.gaps, res.degenerate):
        table.add_row(v.name, f"{sv:.4g}", f"{r:.2g}", f"{g:.3g}", "yes" if d else "no")
    stdout.print(table)
