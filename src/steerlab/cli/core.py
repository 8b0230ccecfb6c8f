"""Core commands: ``info``, ``extract``, ``generate``, ``export-gguf``."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from steerlab.errors import InputError

if TYPE_CHECKING:
    from steerlab.models.hf import LanguageModel
    from steerlab.vectors.extract import Example
    from steerlab.vectors.vector import SteeringVector

from steerlab.cli._app import (
    INFO_PROMPTS,
    BatchOpt,
    DeviceOpt,
    DtypeOpt,
    Method,
    ModelArg,
    Normalization,
    SiteName,
    app,
    load_lm,
    parse_layers,
    parse_selector,
    parse_vector_spec,
    progress_bar,
    require_file,
    stdout,
    steering_columns,
)

# ---------------------------------------------------------------------------- info


def model_facts(lm: LanguageModel) -> list[tuple[str, str]]:
    """(name, value) rows describing a loaded model."""
    cfg = lm.model.config
    template = "tokenizer chat template" if lm.chat.uses_template else "none: plain fallback (User:/Assistant:)"
    n_params = sum(p.numel() for p in lm.model.parameters())
    return [
        ("model", lm.model_id),
        ("architecture", f"{getattr(cfg, 'model_type', '?')} ({type(lm.model).__name__})"),
        ("layers", str(lm.n_layers)),
        ("hidden size", str(lm.hidden_size)),
        ("parameters", f"{n_params / 1e6:.1f} M" if n_params >= 1e5 else f"{n_params:,}"),
        ("chat template", template),
        ("post-instruction tokens", str(lm.chat.post_instruction_tokens())),
        ("device / dtype", f"{lm.device} / {str(next(lm.model.parameters()).dtype).removeprefix('torch.')}"),
        ("dtype chosen because", lm.dtype_reason),
    ]


def layer_norms(lm: LanguageModel, prompts: Sequence[str]) -> dict[int, tuple[float, float]]:
    """Per layer: mean resid_post norm at the last prompt token, and averaged over all prompt tokens."""
    from steerlab.vectors.extract import Example, read_activations

    examples = [Example(p) for p in prompts]
    layers = list(range(lm.n_layers))
    _, last = read_activations(lm, examples, layers, selector="last")
    _, mean = read_activations(lm, examples, layers, selector="mean")
    return {layer: (float(last[layer].mean()), float(mean[layer].mean())) for layer in layers}


@app.command()
def info(model: ModelArg, device: DeviceOpt = "auto", dtype: DtypeOpt = None) -> None:
    """Architecture, layers, hidden size, chat template and per-layer activation norms."""
    lm = load_lm(model, device, dtype)
    facts = Table(title="model", show_header=False)
    facts.add_column(style="bold")
    facts.add_column()
    for name, value in model_facts(lm):
        facts.add_row(name, value)
    stdout.print(facts)
    norms = Table(title=f"mean resid_post norm on {len(INFO_PROMPTS)} built-in prompts")
    for col in ("layer", "last token", "mean over tokens"):
        norms.add_column(col, justify="right")
    for layer, (last, mean) in layer_norms(lm, INFO_PROMPTS).items():
        norms.add_row(str(layer), f"{last:.2f}", f"{mean:.2f}")
    stdout.print(norms)


# ---------------------------------------------------------------------------- extract


def contrast_examples(
    pairs: Path | None,
    positive: Path | None,
    negative: Path | None,
    text_column: str,
    model_kind: str | None,
) -> tuple[list[Example], list[Example]]:
    """Positive and negative examples from a pairs file (default: shipped refusal pairs) or two prompt files."""
    from steerlab.data import load_contrast_pairs, load_prompts, shipped_path
    from steerlab.vectors.extract import Example

    if (positive is None) != (negative is None):
        raise InputError("--positive and --negative go together")
    if positive is not None and negative is not None:
        if pairs is not None:
            raise InputError("give either --pairs or --positive/--negative, not both")
        pos = [Example(p.text) for p in load_prompts(positive, text_column=text_column)]
        neg = [Example(p.text) for p in load_prompts(negative, text_column=text_column)]
        return pos, neg
    rows = load_contrast_pairs(pairs or shipped_path("refusal_pairs"), model_kind=model_kind)
    return [Example(r.prompt, r.positive) for r in rows], [Example(r.prompt, r.negative) for r in rows]


@app.command()
def extract(
    model: ModelArg,
    out: Annotated[Path, typer.Option("--out", help="Output .safetensors file (all layers in one file).")],
    pairs: Annotated[
        Path | None,
        typer.Option(help="Contrast pairs JSONL (id, prompt, refusal, compliance). Default: shipped refusal pairs."),
    ] = None,
    positive: Annotated[Path | None, typer.Option(help="Positive prompt set (.jsonl/.csv with a text column).")] = None,
    negative: Annotated[Path | None, typer.Option(help="Negative prompt set (.jsonl/.csv with a text column).")] = None,
    text_column: Annotated[str, typer.Option(help="Text column of --positive/--negative files.")] = "prompt",
    model_kind: Annotated[str | None, typer.Option(help="Keep only pairs written for 'chat' or 'base' models.")] = None,
    layers: Annotated[str, typer.Option(help="'all' or comma-separated indices, e.g. 4,6,8.")] = "all",
    method: Annotated[Method, typer.Option(help="mean_diff (CAA) or pca of differences.")] = Method.mean_diff,
    selector: Annotated[str, typer.Option(help="last, first, mean, post_instruction or a token index.")] = "last",
    normalization: Annotated[
        Normalization, typer.Option(help="none, unit, or activation_norm (‖v‖ = mean activation norm).")
    ] = Normalization.none,
    site: Annotated[SiteName, typer.Option(help="Where to read activations.")] = SiteName.resid_post,
    batch_size: BatchOpt = 8,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = None,
) -> None:
    """Extract contrast vectors (positive − negative) at the chosen layers in one truncated pass."""
    from steerlab.models.layers import check_layer
    from steerlab.vectors.extract import extract as extract_vectors
    from steerlab.vectors.io import save_vectors

    layer_spec, sel = parse_layers(layers), parse_selector(selector)
    pos, neg = contrast_examples(pairs, positive, negative, text_column, model_kind)
    lm = load_lm(model, device, dtype)
    if isinstance(layer_spec, list):
        layer_spec = [check_layer(lm.model, layer) for layer in layer_spec]
    with progress_bar(f"extracting ({len(pos)}+{len(neg)} examples)") as update:
        vecs = extract_vectors(
            lm,
            pos,
            neg,
            layer_spec,
            method=method.value,
            site=site.value,
            selector=sel,
            normalization=normalization.value,
            batch_size=batch_size,
            progress=update,
        )
    path = save_vectors(out, vecs)
    table = Table(title=f"{len(vecs)} vectors → {path}")
    for col in ("layer", "raw norm", "activation norm", "saved norm"):
        table.add_column(col, justify="right")
    for v in sorted(vecs.values(), key=lambda v: v.layer):
        table.add_row(str(v.layer), f"{v.meta.raw_norm:.3f}", f"{v.meta.activation_norm:.3f}", f"{v.norm:.3f}")
    stdout.print(table)


# ---------------------------------------------------------------------------- generate


def read_vector_specs(specs: Sequence[str], layer: int | None) -> list[tuple[str, SteeringVector]]:
    """Load each ``FILE``, ``FILE:LAYER`` or ``FILE:NAME`` (no model check yet) → (label, vector)."""
    from steerlab.vectors.io import load_vectors

    out = []
    for spec in specs:
        path, file_layer = parse_vector_spec(spec)
        name = None
        if file_layer is None and not Path(spec).exists() and ":" in spec:
            head, _, name = spec.rpartition(":")
            path = Path(head)
        vecs = load_vectors(require_file(path, "vector file"))
        if name is not None:
            if name not in vecs:
                raise InputError(f"{path}: no vector named {name!r}; it holds {', '.join(vecs)}")
            found = [vecs[name]]
        else:
            want = file_layer if file_layer is not None else layer if len(vecs) > 1 else None
            found = list(vecs.values()) if want is None else vecs.at(want)
            if not found:
                raise InputError(f"{path}: no vector for layer {want}")
        if len(found) > 1:
            held = ", ".join(str(v.layer) for v in vecs.values())
            raise InputError(f"{path}: holds vectors for layers {held}; pick one with {path}:LAYER or {path}:NAME")
        v = found[0]
        out.append((f"{path.name}@{v.layer}" if v.name == f"{v.site}.{v.layer}" else f"{path.name}:{v.name}", v))
    return out


def read_prompts(prompt: Sequence[str], prompts: Path | None, text_column: str) -> list[str]:
    """Prompts from ``--prompt`` (repeatable) and ``--prompts FILE``, in that order."""
    from steerlab.data import load_prompts

    texts = list(prompt)
    if prompts is not None:
        texts += [p.text for p in load_prompts(prompts, text_column=text_column)]
    if not texts:
        raise InputError("no prompt: give --prompt TEXT (repeatable) or --prompts FILE")
    return texts


def _reply_table(prompts: Sequence[str], columns: dict[str, list[str]]) -> Table:
    table = Table(show_lines=True, expand=True)
    table.add_column("prompt", ratio=1)
    for name in columns:
        table.add_column(name, ratio=2)
    for i, p in enumerate(prompts):
        table.add_row(p, *(col[i] for col in columns.values()))
    return table


@app.command()
def generate(
    model: ModelArg,
    prompt: Annotated[list[str] | None, typer.Option("--prompt", help="A user message (repeatable).")] = None,
    prompts: Annotated[Path | None, typer.Option(help="A .jsonl/.csv file of prompts.")] = None,
    text_column: Annotated[str, typer.Option(help="Text column of --prompts.")] = "prompt",
    vector: Annotated[
        list[str] | None, typer.Option("--vector", help="FILE, FILE:LAYER or FILE:NAME (repeatable).")
    ] = None,
    layer: Annotated[
        int | None, typer.Option(help="Apply the vectors at this layer (default: each vector's own layer).")
    ] = None,
    strength: Annotated[
        list[float] | None,
        typer.Option(
            "--strength",
            help="Repeat for a sweep with one --vector (one batched pass); with several vectors, one for all or one per vector. Default: 0.1 of a typical activation.",
        ),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 64,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy.")] = 0.0,
    seed: Annotated[
        int | None, typer.Option(help="Sampling seed (with --temperature > 0); prompt i uses seed+i in every column.")
    ] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    allow_other_model: Annotated[
        bool, typer.Option("--allow-other-model", help="Apply vectors made for a model with another config.")
    ] = False,
    no_baseline: Annotated[bool, typer.Option("--no-baseline", help="Skip the unsteered generation.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per prompt instead of a table.")
    ] = False,
    batch_size: BatchOpt = 8,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = None,
) -> None:
    """Generate replies, unsteered and steered side by side (every column in the same batched passes)."""
    from steerlab.models.layers import check_layer
    from steerlab.vectors.io import check_compatible

    texts = read_prompts(prompt or [], prompts, text_column)
    named = read_vector_specs(vector or [], layer)
    columns = steering_columns([v for _, v in named], strength or [])
    if not math.isfinite(temperature):
        raise InputError(f"--temperature must be a finite number, got {temperature}")
    lm = load_lm(model, device, dtype)
    for label, v in named:
        check_compatible(v, lm, strict=not allow_other_model, source=label)
    at = check_layer(lm.model, layer) if layer is not None else None
    if not columns or not no_baseline:
        columns.insert(0, [0.0] * len(named))  # the unsteered column: every strength 0
    names = [column_name(named, col, at) for col in columns]
    with progress_bar(f"generating ({len(texts)} prompts × {len(columns)} columns)") as update:
        replies = generate_columns(
            lm,
            texts,
            [v for _, v in named],
            columns,
            at,
            update,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            system=system,
        )
    table = dict(zip(names, replies))
    if as_json:
        one = sum(n != "unsteered" for n in names) == 1  # a single steered column is keyed "steered"
        keys = {n: "steered" if one and n != "unsteered" else n for n in names}
        for i, p in enumerate(texts):
            typer.echo(json.dumps({"prompt": p, **{keys[n]: col[i] for n, col in table.items()}}))
    else:
        stdout.print(_reply_table(texts, table))


def column_name(named: Sequence[tuple[str, SteeringVector]], strengths: Sequence[float], at: int | None) -> str:
    if not any(strengths):
        return "unsteered"
    where = f"→{at}" if at is not None else ""
    return "steered (" + ", ".join(f"{label}{where} ×{s:g}" for (label, _), s in zip(named, strengths)) + ")"


def generate_columns(
    lm: LanguageModel,
    texts: Sequence[str],
    vectors: Sequence[SteeringVector],
    columns: Sequence[Sequence[float]],
    at: int | None,
    progress: Callable[[int, int], None],
    *,
    batch_size: int,
    seed: int | None,
    **kw: Any,
) -> list[list[str]]:
    """Replies for every (column, prompt) in batched passes: a row's column is its per-row strengths.

    Prompt ``i`` samples with seed ``seed + i`` in every column, so columns differ only by steering.
    """
    from steerlab.interventions.add import Add

    rows = [(c, i) for c in range(len(columns)) for i in range(len(texts))]
    out: list[list[str]] = [[""] * len(texts) for _ in columns]
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        adds = [Add(v, strength=[columns[c][j] for c, _ in chunk], layers=at) for j, v in enumerate(vectors)]
        seeds = [seed + i for _, i in chunk] if seed is not None else None
        replies = lm.generate([texts[i] for _, i in chunk], interventions=adds, batch_size=len(chunk), seed=seeds, **kw)
        for (c, i), reply in zip(chunk, replies):
            out[c][i] = reply
        progress(min(start + batch_size, len(rows)), len(rows))
    return out


# ---------------------------------------------------------------------------- export-gguf


@app.command("export-gguf")
def export_gguf(
    vectors: Annotated[Path, typer.Argument(help="A steerlab vector file (.safetensors).")],
    out: Annotated[Path, typer.Option("--out", help="Output .gguf file.")],
    strength: Annotated[float, typer.Option(help="Multiply every vector by this before writing.")] = 1.0,
    model_hint: Annotated[str | None, typer.Option(help="llama.cpp controlvector.model_hint.")] = None,
) -> None:
    """Write the vectors as a llama.cpp control vector (--control-vector)."""
    from steerlab.vectors.gguf_export import export_gguf as write_gguf
    from steerlab.vectors.gguf_export import llama_cpp_layer
    from steerlab.vectors.io import load_vectors

    vecs = load_vectors(require_file(vectors, "vector file"))
    path = write_gguf(vecs, out, strength=strength, model_hint=model_hint)
    table = Table(title=f"{len(vecs)} vectors → {path}")
    for col in ("layer", "site", "llama.cpp layer", "norm"):
        table.add_column(col, justify="right")
    for v in vecs.values():
        table.add_row(str(v.layer), v.site, str(llama_cpp_layer(v)), f"{v.norm * abs(strength):.3f}")
    stdout.print(table)
