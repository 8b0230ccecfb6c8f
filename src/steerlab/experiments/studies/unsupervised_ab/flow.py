"""Seed 002 as one experiment kind: unsupervised steering vectors from one prompt, judged on A/B questions.

The flow, top to bottom (:meth:`UnsupervisedAB.flow`), for every model in the config:
  1. vectors  — from the training prompt(s), no labels: MELBO (K in parallel), the top right
                singular vectors of the source → target Jacobian (block power iteration) and
                random controls of the same norm; saved under vectors/ (reused on resume)
  2. A/B grid — every question of the selection half of every data set (evaluation.held_out;
                all questions without it) unsteered once, and under every vector at every
                scale (both signs by default), scored from the answer-letter logits; the
                vector × scale conditions of one question share a batch (per-row vectors and
                scales), the layers below the source run once per question
  2b. held-out — each method's best vectors at the scales chosen on the selection half, and
                scale 0, on the report half: the numbers the report states as effects
  3. proxy    — for the top vectors of each method, open answers to a sample of questions,
                with and without steering, parsed (and optionally judged) for the chosen
                option, against the letter the logits prefer
  4. summarise the rows into the seed's tables (method × scale), the best vectors, violin
                data of logit differences and the proxy agreement
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from steerlab._io import slug
from steerlab.errors import ConfigError
from steerlab.experiments.engine.config import ModelSpec
from steerlab.experiments.engine.records import make_key
from steerlab.experiments.engine.registry import ExperimentKind, register_kind
from steerlab.experiments.studies.unsupervised_ab.analysis import (
    proxy_stats,
    split_halves,
    summarise_datasets,
    top_vectors,
    vector_info,
)
from steerlab.experiments.studies.unsupervised_ab.config import (
    UnsupervisedABConfig,
)
from steerlab.experiments.studies.unsupervised_ab.records import UnsupervisedCell
from steerlab.experiments.studies.unsupervised_ab.summary import (
    DEFINITIONS,
    METHODS,
    ABSetInfo,
    DatasetSummary,
    ModelSummary,
    ProxyStats,
    UnsupervisedSummary,
)
from steerlab.interventions.spec import InterventionSpec

if TYPE_CHECKING:  # torch-heavy modules: imported where used, so loading a config stays light
    from steerlab.evals.ab import ABQuestion
    from steerlab.experiments.engine.run import Run
    from steerlab.experiments.studies.unsupervised_ab.records import ABRow
    from steerlab.vectors.vector import SteeringVector, VectorSet
from steerlab.experiments.studies.unsupervised_ab.stages import (
    AB,
    PROXY,
)
from steerlab.experiments.studies.unsupervised_ab.vectors import make_melbo, make_power, make_random

# ---------------------------------------------------------------------------- config


# ---------------------------------------------------------------------------- worker tasks


def _stage_vectors(run: Run, cfg: UnsupervisedABConfig, spec: ModelSpec) -> VectorSet:
    """Every vector of one model, trained (or read back on resume), also written together to
    ``vectors/<model>.safetensors`` (the per-method files are the resume checkpoints)."""
    from steerlab.vectors.io import save_vectors
    from steerlab.vectors.vector import VectorSet

    t, base = cfg.training, slug(spec.name)
    out: list[SteeringVector] = []
    if cfg.melbo.n_vectors:
        out += run.vectors(f"{base}-melbo", spec, make_melbo, t, cfg.melbo, cfg.seed).values()
    if cfg.power_iteration.n_vectors:
        out += run.vectors(f"{base}-power_iteration", spec, make_power, t, cfg.power_iteration, cfg.seed).values()
    if cfg.random.n_vectors:
        out += run.vectors(f"{base}-random", spec, make_random, t, cfg.random.n_vectors, cfg.seed).values()
    vs = VectorSet(out)
    save_vectors(run.root / "vectors" / f"{base}.safetensors", vs)
    return vs


# ---------------------------------------------------------------------------- cells


def _behavior_first(q: ABQuestion, invert: bool) -> bool:
    """Whether the behaviour letter comes first among the question's letters (the split's stratum)."""
    from steerlab.evals.ab_scoring import question_letters

    behavior, other = question_letters(q, invert)
    return q.letters.index(behavior) < q.letters.index(other)


def _cell(
    run: Run,
    cfg: UnsupervisedABConfig,
    model: str,
    stage: str,
    q: ABQuestion,
    invert: bool,
    v: SteeringVector | None,
    scale: float,
) -> UnsupervisedCell:
    from steerlab.evals.ab_scoring import question_letters

    behavior, other = question_letters(q, invert)
    name = None if v is None else v.name
    key = make_key(model, stage, q.dataset, q.id, name or "base", scale)
    spec = InterventionSpec()
    if v is not None:
        strength = scale / v.norm if cfg.evaluation.unit_norm else scale
        spec = InterventionSpec(kind="add", vector=f"{model}/{name}", strength=strength)
    return UnsupervisedCell(
        key=key,
        model=model,
        seed=run.seed(key),
        intervention=spec,
        stage=stage,
        dataset=q.dataset,
        question_id=q.id,
        question=q.render(),
        letters=list(q.letters),
        options=[o.text for o in q.options],
        behavior_letter=behavior,
        other_letter=other,
        method="none" if v is None else v.meta.method,
        vector=name,
        scale=scale if v is not None else 0.0,
    )


# ---------------------------------------------------------------------------- the kind


# ---------------------------------------------------------------------------- worker side


def check_layers(cfg: UnsupervisedABConfig, n_layers: int) -> None:
    """Raise ConfigError when the training layers do not fit a model."""
    from steerlab.errors import InputError

    try:
        cfg.training.layers(n_layers)
    except InputError as e:
        raise ConfigError(f"training: {e}") from None


# ---------------------------------------------------------------------------- the kind


@register_kind
class UnsupervisedAB(ExperimentKind[UnsupervisedABConfig, UnsupervisedSummary]):
    """Seed 002 (see the module docstring)."""

    name = "unsupervised_ab"
    Config = UnsupervisedABConfig
    Summary = UnsupervisedSummary
    stages = (AB, PROXY)

    def flow(self, cfg: UnsupervisedABConfig, run: Run) -> UnsupervisedSummary:
        from steerlab.evals.ab import load_ab_questions

        ev = cfg.evaluation
        sets = {
            d.name: load_ab_questions(
                d.source, name=d.name, policy=ev.multi_choice, n=d.n_questions, seed=cfg.seed, balance=ev.rebalance
            )
            for d in cfg.datasets
        }
        invert = {d.name: d.invert for d in cfg.datasets}
        for spec in cfg.models:  # fail early: a model that does not load, layers that do not fit it
            check_layers(cfg, run.model_info(spec).n_layers)

        # 1. vectors: MELBO, power iteration, random controls (each file reused on resume)
        vectors = {spec.name: _stage_vectors(run, cfg, spec) for spec in cfg.models}
        table = {f"{model}/{name}": v for model, vs in vectors.items() for name, v in vs.items()}

        # 2. the A/B grid on the selection half: per question, unsteered once + every vector × scale; one
        #    engine batch per question, which _score splits into passes of at most ev.batch_size rows
        halves = {
            name: split_halves([(q.id, _behavior_first(q, invert[name])) for q in abset.questions], cfg.seed)
            if ev.held_out
            else ([q.id for q in abset.questions], [])
            for name, abset in sets.items()
        }
        selection = {name: set(h[0]) for name, h in halves.items()}
        per_question = 1 + len(next(iter(vectors.values()))) * len(ev.steered_scales)
        cells = [
            _cell(run, cfg, model, "ab", q, invert[name], v, s)
            for model, vs in vectors.items()
            for name, abset in sets.items()
            for q in abset.questions
            if q.id in selection[name]
            for v, s in [(None, 0.0)] + [(v, s) for v in vs.values() for s in ev.steered_scales]
        ]
        rows = run.cells(AB, cells, vectors=table, batch_size=per_question, desc=f"A/B grid: {len(cells)} cells")

        info = {name: ABSetInfo.of(s, d) for (name, s), d in zip(sets.items(), cfg.datasets)}
        infos = {model: [vector_info(v) for v in vs.values()] for model, vs in vectors.items()}
        n_best = max(ev.top_k, cfg.proxy_check.vectors_per_method if cfg.proxy_check.enabled else 1)

        def summarise(model: str, got: list[ABRow]) -> dict[str, DatasetSummary]:
            mine = [r for r in got if r.model == model]
            return summarise_datasets(cfg, mine, info, infos[model], halves, n_best)

        # 2b. held-out: the best conditions chosen on the selection half, and scale 0, on the report half
        if ev.held_out:
            picked = {model: summarise(model, rows) for model in vectors}
            cells = [
                _cell(run, cfg, model, "ab", q, invert[name], v, s)
                for model, vs in vectors.items()
                for name, abset in sets.items()
                for q in abset.questions
                if q.id not in selection[name]
                for v, s in [(None, 0.0)] + [(vs[n], s) for n, s in top_vectors(picked[model][name], n_best)]
            ]
            rows = rows + run.cells(
                AB, cells, vectors=table, batch_size=1 + 3 * n_best, desc=f"held-out half: {len(cells)} cells"
            )
        datasets = {model: summarise(model, rows) for model in vectors}

        # 3. the proxy check: open answers for the top vectors of each method, at their best scale,
        #    on report-half questions when there is a split
        proxy: dict[str, list[ProxyStats]] = {model: [] for model in vectors}
        if cfg.proxy_check.enabled:
            p = cfg.proxy_check
            cells = []
            for model, vs in vectors.items():
                for name, abset in sets.items():
                    report = set(halves[name][1]) or selection[name]
                    qs = [q for q in abset.questions if q.id in report][: p.n_questions]
                    chosen = top_vectors(datasets[model][name], p.vectors_per_method)
                    cells += [
                        _cell(run, cfg, model, "proxy", q, invert[name], v, s)
                        for v, s in [(None, 0.0)] + [(vs[n], s) for n, s in chosen]
                        for q in qs
                    ]
            prow = run.cells(
                PROXY, cells, vectors=table, batch_size=p.batch_size, desc=f"proxy check: {len(cells)} answers"
            )
            for model in vectors:
                mine = [r for r in prow if r.model == model]
                proxy[model] = proxy_stats(mine, rows, judge=bool(p.judge_model))

        # 4. summary, built once
        models = {m: ModelSummary(vectors=infos[m], datasets=datasets[m], proxy=proxy[m]) for m in vectors}
        return UnsupervisedSummary(name=cfg.name, models=models, definitions=DEFINITIONS)

    def report(self, cfg: UnsupervisedABConfig, summary: UnsupervisedSummary, out_dir: Path) -> Path:
        from steerlab._io import atomic_write_text
        from steerlab.experiments.studies.unsupervised_ab.plots import violin_plots
        from steerlab.experiments.studies.unsupervised_ab.report import render_report

        plots = {model: violin_plots(m, out_dir, slug(model), METHODS) for model, m in summary.models.items()}
        path = out_dir / "report.md"
        atomic_write_text(path, render_report(cfg, summary, plots))
        return path
