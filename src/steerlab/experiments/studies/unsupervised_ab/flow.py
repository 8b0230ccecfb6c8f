"""Seed 002 as one experiment kind: unsupervised steering vectors from one prompt, judged on A/B questions.

The flow, top to bottom (:meth:`UnsupervisedAB.flow`), for every model in the config:
  1. vectors  — from the training prompt(s), no labels: MELBO (K in parallel), the top right
                singular vectors of the source → target Jacobian (block power iteration) and
                random controls of the same norm; saved under vectors/ (reused on resume)
  2. A/B grid — every question of every data set unsteered once, and under every vector at
                every scale (both signs by default), scored from the answer-letter logits;
                the vector × scale conditions of one question share a batch (per-row vectors
                and scales), the layers below the source run once per question
  3. proxy    — for the top vectors of each method, open answers to a sample of questions,
                with and without steering, parsed (and optionally judged) for the chosen
                option, against the letter the logits prefer
  4. summarise the rows into the seed's tables (method × scale), the best vectors, violin
                data of logit differences and the proxy agreement
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from steerlab._io import slug
from steerlab.errors import ConfigError
from steerlab.experiments.engine.config import ModelSpec
from steerlab.experiments.engine.records import InterventionSpec, make_key
from steerlab.experiments.engine.registry import ExperimentKind, Stage, register_kind
from steerlab.experiments.studies.unsupervised_ab.config import (
    MelboStage,
    PowerStage,
    TrainingConfig,
    UnsupervisedABConfig,
)
from steerlab.experiments.studies.unsupervised_ab.records import ABRow, ProxyRow, UnsupervisedCell
from steerlab.experiments.studies.unsupervised_ab.summary import (
    DEFINITIONS,
    METHODS,
    ABSetInfo,
    UnsupervisedSummary,
    proxy_stats,
    summarise_model,
    top_vectors,
    vector_info,
)
from steerlab.vectors.unsupervised import Placement

if TYPE_CHECKING:  # torch-heavy modules: imported where used, so loading a config stays light
    from steerlab.evals.ab import ABQuestion
    from steerlab.evals.ab_choice import ChoiceJudge
    from steerlab.experiments.engine.run import Run
    from steerlab.experiments.engine.worker import WorkerContext
    from steerlab.models.hf import LanguageModel
    from steerlab.vectors.vector import SteeringVector, VectorSet

# ---------------------------------------------------------------------------- config


# ---------------------------------------------------------------------------- worker tasks


def make_melbo(lm: LanguageModel, t: TrainingConfig, m: MelboStage, seed: int) -> VectorSet:
    """MELBO vectors (a worker task)."""
    from steerlab.progress import progress_bar
    from steerlab.vectors.melbo import MelboSettings, train_melbo

    s = MelboSettings(**t.model_dump(include=set(Placement.model_fields)), **m.model_dump(exclude={"n_vectors"}))
    with progress_bar(f"MELBO: {m.n_vectors} vectors × {m.steps} steps") as bar:
        return train_melbo(lm, t.prompts, m.n_vectors, s, system=t.system_prompt, seed=seed, progress=bar).vectors


def make_power(lm: LanguageModel, t: TrainingConfig, p: PowerStage, seed: int) -> VectorSet:
    """Power-iteration vectors (a worker task)."""
    from steerlab.progress import progress_bar
    from steerlab.vectors.power_iteration import PowerIterationSettings, jacobian_power_iteration

    s = PowerIterationSettings(
        **t.model_dump(include=set(Placement.model_fields)), **p.model_dump(exclude={"n_vectors"})
    )
    with progress_bar(f"power iteration: {p.n_vectors} vectors") as bar:
        return jacobian_power_iteration(
            lm, t.prompts, p.n_vectors, s, system=t.system_prompt, seed=seed, progress=bar
        ).vectors


def make_random(lm: LanguageModel, t: TrainingConfig, n: int, seed: int) -> VectorSet:
    """Random controls of norm R at the training layer and site (a worker task)."""
    import torch

    from steerlab.vectors.unsupervised import site_norm, training_batch, vector_meta, vector_seed
    from steerlab.vectors.vector import SteeringVector, VectorSet

    source, target = t.layers(lm.n_layers)
    act_norm = site_norm(lm, training_batch(lm, t.prompts, t.system_prompt), source, t.site)
    out = []
    for i in range(n):
        v = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(vector_seed(seed, "random", i)))
        meta = vector_meta(
            lm,
            name=f"random.{i}",
            method="random",
            layer=source,
            site=t.site,
            radius=t.radius,
            activation_norm=act_norm,
            prompts=t.prompts,
            system=t.system_prompt,
            extra={"index": i, "seed": seed, "source_layer": source, "target_layer": target},
        )
        out.append(SteeringVector(v / v.norm() * t.radius, meta))
    return VectorSet(out)


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
        dataset=q.dataset,  # type: ignore[arg-type]
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


def _prompt(cfg: UnsupervisedABConfig, lm: LanguageModel, cell: UnsupervisedCell, prefix: str | None) -> str:
    conv = lm.format(cell.question, cfg.evaluation.system_prompt)
    return conv + (prefix or "")


def _score(
    cfg: UnsupervisedABConfig, lm: LanguageModel, cells: Sequence[UnsupervisedCell], ctx: WorkerContext
) -> list[ABRow]:
    """Letter logits for a batch of ab cells: a question's conditions in equal passes of at most
    ``evaluation.batch_size`` rows, the layers below the source once per pass."""
    from steerlab.evals.ab import check_letter_position, default_answer_prefix, letter_token_ids
    from steerlab.evals.ab_scoring import score_conditions
    from steerlab.interventions.spec import batch_interventions

    ev = cfg.evaluation
    prefix = default_answer_prefix(lm) if ev.answer_prefix is None else ev.answer_prefix
    ids = ctx.cached(f"letters:{prefix!r}", lambda: letter_token_ids(lm, "ABCDEFGH", prefix))
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(cells):
        groups.setdefault(c.question_id, []).append(i)
    out: list[ABRow | None] = [None] * len(cells)
    for group in groups.values():
        first = cells[group[0]]
        prompt = _prompt(cfg, lm, first, prefix)
        ctx.cached(f"letter-check:{prefix!r}", lambda p=prompt: check_letter_position(lm, p, "A", ids["A"]))  # once
        n_passes = -(-len(group) // ev.batch_size)
        for idx in (group[k::n_passes] for k in range(n_passes)):  # equal passes, no small remainder
            ivs = batch_interventions([cells[i].intervention for i in idx], ctx.vectors)
            scores = score_conditions(
                lm, prompt, (ids[first.behavior_letter], ids[first.other_letter]), ivs, len(idx), mass=ev.letter_mass
            )
            for i, sc in zip(idx, scores):
                out[i] = ABRow(
                    **cells[i].model_dump(exclude={"version"}),
                    logit_behavior=round(sc.logit_behavior, 5),
                    logit_other=round(sc.logit_other, 5),
                    logit_diff=round(sc.logit_diff, 5),
                    p_behavior=round(sc.p_behavior, 6),
                    matches=sc.matches,
                    letter_mass=None if sc.mass is None else round(sc.mass, 6),
                )
    assert all(r is not None for r in out), "every cell of the batch belongs to one question group"
    return [r for r in out if r is not None]


def _answer(
    cfg: UnsupervisedABConfig, lm: LanguageModel, cells: Sequence[UnsupervisedCell], ctx: WorkerContext
) -> list[ProxyRow]:
    """Open answers for a batch of proxy cells, parsed (and judged) for the chosen option."""
    from steerlab.evals.ab_choice import parse_choice
    from steerlab.interventions.spec import batch_interventions
    from steerlab.models.backend import user

    p = cfg.proxy_check
    convs = [user(c.question, cfg.evaluation.system_prompt) for c in cells]
    replies = lm.complete(
        convs,
        max_new_tokens=p.max_new_tokens,
        temperature=0.0,
        batch_size=len(cells),
        interventions=batch_interventions([c.intervention for c in cells], ctx.vectors),
    )
    parsed = [parse_choice(r.text, c.letters, c.options) for c, r in zip(cells, replies)]
    judged: list[str | None] = [None] * len(cells)
    if p.judge_model:
        judged = _judge(cfg, ctx).judge([_question(c) for c in cells], [r.text for r in replies])
    return [
        ProxyRow(**c.model_dump(exclude={"version"}), output=r.text, finish_reason=r.finish_reason, parsed=a, judged=j)
        for c, r, a, j in zip(cells, replies, parsed, judged)
    ]


def _question(cell: UnsupervisedCell) -> ABQuestion:
    from steerlab.evals.ab import parse_question

    return parse_question(cell.question, f" ({cell.behavior_letter})", f" ({cell.other_letter})")


def _judge(cfg: UnsupervisedABConfig, ctx: WorkerContext) -> ChoiceJudge:
    from steerlab.evals.ab_choice import ChoiceJudge

    spec = cfg.proxy_check.judge_model
    assert spec is not None, "called only when proxy_check.judge_model is set"
    judge: ChoiceJudge = ctx.judge(spec, ChoiceJudge, batch_size=cfg.proxy_check.batch_size)
    return judge


def check_layers(cfg: UnsupervisedABConfig, n_layers: int) -> None:
    """Raise ConfigError when the training layers do not fit a model."""
    from steerlab.errors import InputError

    try:
        cfg.training.layers(n_layers)
    except InputError as e:
        raise ConfigError(f"training: {e}") from None


def _length(cfg: UnsupervisedABConfig, cell: UnsupervisedCell) -> int:
    return len(cell.question)


#: letter logits of every question under every condition; open answers of the proxy check
AB = Stage("ab", ABRow, _score, _length)
PROXY = Stage("proxy", ProxyRow, _answer, _length)


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

        # 2. the A/B grid: per question, unsteered once + every vector × scale; one engine batch per
        #    question, which _score splits into passes of at most ev.batch_size rows
        per_question = 1 + len(next(iter(vectors.values()))) * len(ev.steered_scales)
        cells = [
            _cell(run, cfg, model, "ab", q, invert[name], v, s)
            for model, vs in vectors.items()
            for name, abset in sets.items()
            for q in abset.questions
            for v, s in [(None, 0.0)] + [(v, s) for v in vs.values() for s in ev.steered_scales]
        ]
        rows = run.cells(AB, cells, vectors=table, batch_size=per_question, desc=f"A/B grid: {len(cells)} cells")

        # 3. the proxy check: open answers for the top vectors of each method, at their best scale
        info = {name: ABSetInfo.of(s, d) for (name, s), d in zip(sets.items(), cfg.datasets)}
        summaries = {
            model: summarise_model(
                cfg,
                [r for r in rows if r.model == model],
                info,  # type: ignore[misc]
                [vector_info(v) for v in vectors[model].values()],
            )
            for model in vectors
        }
        if cfg.proxy_check.enabled:
            p = cfg.proxy_check
            cells = []
            for model, vs in vectors.items():
                for name, abset in sets.items():
                    qs = abset.questions[: p.n_questions]
                    chosen = top_vectors(summaries[model].datasets[name], p.vectors_per_method)
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
                summaries[model] = summaries[model].model_copy(
                    update={"proxy": proxy_stats(mine, rows, judge=bool(p.judge_model))}
                )  # type: ignore[arg-type]

        # 4. summary
        return UnsupervisedSummary(name=cfg.name, models=summaries, definitions=DEFINITIONS)

    def report(self, cfg: UnsupervisedABConfig, summary: UnsupervisedSummary, out_dir: Path) -> Path:
        from steerlab._io import atomic_write_text
        from steerlab.experiments.studies.unsupervised_ab.plots import violin_plots
        from steerlab.experiments.studies.unsupervised_ab.report import render_report

        plots = {model: violin_plots(m, out_dir, slug(model), METHODS) for model, m in summary.models.items()}
        path = out_dir / "report.md"
        atomic_write_text(path, render_report(cfg, summary, plots))
        return path
