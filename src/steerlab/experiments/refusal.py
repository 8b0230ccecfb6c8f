"""Seeds 000/001 as one function: CAA refusal vectors and the fair 4-way comparison.

Reads top to bottom. For each model:
  1. extract  — CAA vectors at the candidate layers from the contrast pairs (one pass per batch)
  2. select   — steer alone at the selection strength on the validation split; choose the layer
  3. evaluate — base, prompt, steer × strengths, prompt + steer × strengths on the test split,
                all conditions mixed in batched passes with per-row strengths
Then summarise every model from the rows on disk, and write summary.json, report.md and plots.
Every stage skips work already on disk, so a rerun after a crash finishes the run.
"""

from __future__ import annotations

import re
from pathlib import Path

from steerlab.errors import ConfigError
from steerlab.experiments.cells import Cell, make_key, run_cells
from steerlab.experiments.config import ModelSpec, RefusalStudyConfig
from steerlab.experiments.refusal_summary import choose_layer, condition_table, cross_model_row
from steerlab.experiments.store import RunStore
from steerlab.experiments.study_data import StudyData, load_study_data
from steerlab.progress import progress_bar


def candidate_layers(spec: ModelSpec, n_layers: int) -> list[int]:
    """The configured layers, or five layers spread over 30%–60% of the depth."""
    if spec.layers == "middle":
        lo, hi = round(0.3 * (n_layers - 1)), round(0.6 * (n_layers - 1))
        return sorted({round(lo + i * (hi - lo) / 4) for i in range(5)})
    for layer in spec.layers:
        if not -n_layers <= layer < n_layers:
            raise ConfigError(f"models.layers: layer {layer} is out of range for a model with {n_layers} layers")
    return [layer % n_layers for layer in spec.layers]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "model"


def extract_vectors(lm, data: StudyData, layers: list[int], cfg: RefusalStudyConfig, path: Path):  # noqa: ANN001, ANN201
    """Load the vectors from ``path`` if a previous run made them, else extract and save."""
    from steerlab.vectors import Example, extract, load_vectors, save_vectors

    if path.exists():
        vecs = {v.layer: v for v in load_vectors(path, lm)}
        if set(layers) <= set(vecs):
            return vecs
    pos = [Example(p.prompt, p.positive) for p in data.pairs]
    neg = [Example(p.prompt, p.negative) for p in data.pairs]
    e = cfg.extraction
    with progress_bar(f"extract {len(layers)} layers") as bar:
        vecs = extract(lm, pos, neg, layers, method=e.method, site=e.site, selector=e.selector,
                       normalization=e.normalization, progress=bar)
    save_vectors(path, vecs)
    return vecs


def selection_cells(label: str, data: StudyData, layers: list[int], strength: float) -> list[Cell]:
    return [Cell(make_key(label, "select", layer, strength, p.id), label, "select", "steer", False, strength,
                 layer, p.id, p.label or "", p.category, p.style, p.text)
            for layer in layers for p in data.val]


def evaluation_cells(label: str, data: StudyData, layer: int, strengths: list[float]) -> list[Cell]:
    grid = [("base", False, 0.0), ("prompt", True, 0.0)]
    grid += [("steer", False, s) for s in strengths] + [("prompt+steer", True, s) for s in strengths]
    return [Cell(make_key(label, "eval", cond, layer if s else "-", s, p.id), label, "eval", cond, system, s,
                 layer if s else None, p.id, p.label or "", p.category, p.style, p.text)
            for cond, system, s in grid for p in data.test]


def run_refusal_study(cfg: RefusalStudyConfig, run_dir: str | Path) -> Path:
    """Run (or resume) the study; returns the path of ``report.md``."""
    from steerlab.models import load_model

    store = RunStore(run_dir)
    store.start(cfg)
    data = load_study_data(cfg.data, cfg.seed)
    g, c = cfg.generation, cfg.conditions
    sel_strength = c.selection_strength if c.selection_strength is not None else sorted(c.strengths)[len(c.strengths) // 2]
    llm_judge = _llm_judge(cfg, store)
    chosen: dict[str, dict] = {}
    for spec in cfg.models:
        label = spec.label or spec.id
        lm = load_model(spec.id, device=spec.device, dtype=spec.dtype, batch_size=g.batch_size)
        layers = candidate_layers(spec, lm.n_layers)

        # 1. extract
        vectors = extract_vectors(lm, data, layers, cfg, store.root / "vectors" / f"{slug(label)}.safetensors")

        # 2. select the layer on the validation split
        run = dict(system_prompt=c.system_prompt, max_new_tokens=g.max_new_tokens, temperature=g.temperature,
                   batch_size=g.batch_size, seed=cfg.seed, positions=c.steer_positions, llm_judge=llm_judge)
        cells = selection_cells(label, data, layers, sel_strength)
        with progress_bar(f"{label}: choose layer") as bar:
            run_cells(lm, cells, vectors, store, progress=bar, **run)
        sel_rows = [r for r in store.rows() if r["model"] == label and r["stage"] == "select"]
        layer, layer_table = choose_layer(sel_rows, cfg.judges.min_coherence)
        for t in layer_table:
            t["vector_raw_norm"] = vectors[t["layer"]].meta.raw_norm
            t["activation_norm"] = vectors[t["layer"]].meta.activation_norm
        chosen[label] = {"layer": layer, "selection_strength": sel_strength, "layers": layer_table}

        # 3. evaluate every condition on the test split, conditions mixed in batches
        cells = evaluation_cells(label, data, layer, list(c.strengths))
        with progress_bar(f"{label}: evaluate {len(cells)} cells") as bar:
            run_cells(lm, cells, vectors, store, progress=bar, **run)
        del lm

    return write_outputs(cfg, store, chosen)


def _llm_judge(cfg: RefusalStudyConfig, store: RunStore):  # noqa: ANN202
    if not cfg.judges.llm_judge_model:
        return None
    from steerlab.evals.cache import CachedJudge
    from steerlab.evals.llm_judge import LLMJudge
    from steerlab.models import load_model

    from steerlab.models.api import parse_api_spec

    spec = cfg.judges.llm_judge_model
    judge_lm = parse_api_spec(spec) or load_model(spec, batch_size=cfg.generation.batch_size)
    return CachedJudge(LLMJudge(judge_lm), store.root / "verdicts.jsonl")


def write_outputs(cfg: RefusalStudyConfig, store: RunStore, chosen: dict[str, dict]) -> Path:
    """summary.json, report.md and plots, from the rows on disk."""
    from steerlab.report.refusal_report import render_report
    from steerlab.report.refusal_plots import plot_rates_vs_strength

    rows = store.rows()
    summary: dict = {"name": cfg.name, "models": {}, "cross_model": []}
    for spec in cfg.models:
        label = spec.label or spec.id
        eval_rows = [r for r in rows if r["model"] == label and r["stage"] == "eval"]
        table = condition_table(eval_rows, cfg.bootstrap_resamples, cfg.seed)
        summary["models"][label] = {"layer_selection": chosen[label], "conditions": table,
                                    "agreement": _agreement(eval_rows)}
        summary["cross_model"].append(cross_model_row(label, table, cfg.judges.min_coherence))
        plot_rates_vs_strength(table, store.root / f"rates_vs_strength_{slug(label)}.png", title=label)
    store.write_json("summary.json", summary)
    return store.write_text("report.md", render_report(cfg, summary))


def _agreement(rows: list[dict]) -> dict | None:
    if not rows or rows[0].get("verdict_llm") is None:
        return None
    from steerlab.evals.agreement import judge_agreement

    return judge_agreement([r["verdict_markers"] for r in rows], [r["verdict_llm"] for r in rows],
                           judge_a="markers", judge_b="llm").to_dict()
