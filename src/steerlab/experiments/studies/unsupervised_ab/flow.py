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
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from steerlab._io import slug
from steerlab.errors import ConfigError
from steerlab.evals.ab import MultiChoicePolicy
from steerlab.experiments.engine.config import ExperimentConfig, ModelSpec, Strict
from steerlab.experiments.engine.registry import ExperimentKind, register_kind
from steerlab.experiments.engine.records import Cell, InterventionSpec, Row, make_key
from steerlab.experiments.studies.unsupervised_ab.summary import (
    DEFINITIONS, METHODS, ABSetInfo, UnsupervisedSummary, proxy_stats, summarise_model, top_vectors, vector_info,
)
from steerlab.vectors.melbo import MelboOptions
from steerlab.vectors.power_iteration import PowerIterationOptions
from steerlab.vectors.unsupervised import SEED_PROMPT, SEED_SYSTEM, Placement

if TYPE_CHECKING:  # torch-heavy modules: imported where used, so loading a config stays light
    from steerlab.evals.ab import ABQuestion
    from steerlab.experiments.engine.run import Run
    from steerlab.experiments.engine.worker import WorkerContext
    from steerlab.models.hf import LanguageModel
    from steerlab.vectors.vector import SteeringVector, VectorSet

# ---------------------------------------------------------------------------- config


class TrainingConfig(Placement):
    """The training prompt(s) and where every method injects and reads (shared by all methods)."""

    prompts: list[str] = Field([SEED_PROMPT], min_length=1, description="training prompts (user turns); the seed: one")
    system_prompt: str | None = Field(SEED_SYSTEM, description="system prompt of the training prompts")


class MelboStage(MelboOptions):
    """MELBO vectors (hyper-parameters: steerlab.vectors.melbo)."""

    n_vectors: int = Field(12, ge=0, description="how many MELBO vectors (the seed: 12)")


class PowerStage(PowerIterationOptions):
    """Jacobian power-iteration vectors (settings: steerlab.vectors.power_iteration)."""

    n_vectors: int = Field(8, ge=0, description="how many singular vectors (the seed: 8)")


class RandomStage(Strict):
    """Random control vectors: isotropic directions of norm R at the same layer and site."""

    n_vectors: int = Field(4, ge=0, description="how many random controls (the seed: 4)")


class DatasetConfig(Strict):
    """One set of advanced-ai-risk questions."""

    name: str = Field(description="the data set's name in tables")
    source: str = Field(description="shipped:survival-instinct, shipped:corrigible-neutral-HHH, or a JSONL path")
    n_questions: int | None = Field(100, ge=1, description="questions sampled (seeded); None = all usable")
    invert: bool = Field(False, description="the behaviour is the NON-matching answer (e.g. 'survival' on a file "
                         "whose matching answer accepts shutdown)")
    behavior: str = Field("matching", description="what the behaviour letter means, for tables (e.g. 'survival')")


class EvaluationConfig(Strict):
    """The A/B grid: scales, formatting, scoring."""

    scales: list[float] = Field([-20, -10, -5, 0, 5, 10, 20], min_length=1,
                                description="steering scales; 0 = the unsteered baseline (see unit_norm)")
    unit_norm: bool = Field(True, description="scale s adds s · v/‖v‖ (the seed's unit vectors: s is the added "
                            "norm, whatever MELBO's R); false: s multiplies the saved vector (norm R)")
    both_signs: bool = Field(True, description="also evaluate −s for every s (i.e. both ±v of every vector)")
    multi_choice: MultiChoicePolicy = Field("drop", description="questions with options past B: drop, reduce or pair "
                                            "(steerlab.evals.ab)")
    rebalance: bool = Field(True, description="swap options in a seeded half so the behaviour letter is A in half")
    system_prompt: str | None = Field(SEED_SYSTEM, description="system prompt of every question")
    answer_prefix: str | None = Field(None, description="reply text before the letter; None = ' (' in the plain "
                                      "format, '(' after a chat template")
    letter_mass: bool = Field(True, description="report p(letter A) + p(letter B) (needs the vocabulary normaliser "
                              "at the answer position)")
    batch_size: int = Field(64, ge=1, description="rows per forward pass: a question's conditions are split into "
                            "equal passes of at most this many rows")
    bootstrap_resamples: int = Field(2000, ge=100, description="resamples for the intervals of means")
    top_k: int = Field(3, ge=1, description="top-k and rank-1..k violin plots per method")

    @field_validator("scales")
    @classmethod
    def _unique(cls, v: list[float]) -> list[float]:
        if len(set(v)) != len(v):
            raise ValueError("scales: a scale is listed twice")
        return v

    @property
    def steered_scales(self) -> list[float]:
        """The nonzero scales evaluated, sorted (with −s for every s under ``both_signs``)."""
        s = {x for x in self.scales if x != 0}
        if self.both_signs:
            s |= {-x for x in s}
        return sorted(s)


class ProxyCheckConfig(Strict):
    """Check the logit proxy against generated answers."""

    enabled: bool = Field(True, description="run the check")
    vectors_per_method: int = Field(1, ge=1, description="top vectors per method (at their best scale) to check")
    n_questions: int = Field(10, ge=1, description="questions per data set")
    max_new_tokens: int = Field(32, ge=1, description="tokens per open answer")
    judge_model: str | None = Field(None, description="optional LLM judge of the chosen option: a load_model spec or "
                                    "openai:MODEL@URL (None = the parser only)")
    batch_size: int = Field(16, ge=1, description="rows per generation batch")


class UnsupervisedABConfig(ExperimentConfig):
    """Seed 002: MELBO, Jacobian power iteration and random vectors from one prompt, on A/B questions."""

    kind: Literal["unsupervised_ab"] = Field("unsupervised_ab", description="experiment kind")
    name: str = Field("unsupervised_ab", description="run name")
    training: TrainingConfig = TrainingConfig()
    melbo: MelboStage = MelboStage()
    power_iteration: PowerStage = PowerStage()
    random: RandomStage = RandomStage()
    datasets: list[DatasetConfig] = Field(min_length=1, description="A/B question sets")
    evaluation: EvaluationConfig = EvaluationConfig()
    proxy_check: ProxyCheckConfig = ProxyCheckConfig()

    @model_validator(mode="after")
    def _check(self) -> UnsupervisedABConfig:
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError("datasets: two data sets share a name")
        if self.melbo.n_vectors + self.power_iteration.n_vectors + self.random.n_vectors == 0:
            raise ValueError("no vectors: set melbo/power_iteration/random n_vectors")
        if not self.evaluation.steered_scales:
            raise ValueError("evaluation.scales: give at least one nonzero scale")
        return self


# ---------------------------------------------------------------------------- cells and rows


class UnsupervisedCell(Cell):
    """One question under one condition: scored from letter logits (ab) or answered freely (proxy)."""

    stage: Literal["ab", "proxy"] = Field(description="ab (letter logits) or proxy (open answer)")
    dataset: str
    question_id: str
    question: str = Field(description="the question as shown (after the multi-choice policy and rebalancing)")
    letters: list[str] = Field(description="the option letters shown")
    options: list[str] = Field(description="the option texts, in letter order")
    behavior_letter: str = Field(description="the letter of the behaviour answer")
    other_letter: str = Field(description="the other labelled letter")
    method: str = Field(description="none (unsteered), melbo, power_iteration or random")
    vector: str | None = Field(description="the vector's name (None when unsteered)")
    scale: float = Field(description="the condition's scale (0 = unsteered; see evaluation.unit_norm)")


class UnsupervisedRow(UnsupervisedCell, Row):
    """A scored (ab) or answered (proxy) cell; the other stage's fields are None."""

    logit_behavior: float | None = None
    logit_other: float | None = None
    logit_diff: float | None = Field(None, description="logit(behaviour letter) − logit(other letter)")
    p_behavior: float | None = Field(None, description="softmax over the two letters")
    matches: bool | None = Field(None, description="logit difference > 0")
    letter_mass: float | None = Field(None, description="p(behaviour letter) + p(other letter) over the vocabulary")
    output: str | None = None
    finish_reason: Literal["stop", "length"] | None = None
    parsed: str | None = Field(None, description="letter the parser reads in the open answer (None = none)")
    judged: str | None = Field(None, description="letter the LLM judge reads (None = none or no judge)")


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

    s = PowerIterationSettings(**t.model_dump(include=set(Placement.model_fields)),
                               **p.model_dump(exclude={"n_vectors"}))
    with progress_bar(f"power iteration: {p.n_vectors} vectors") as bar:
        return jacobian_power_iteration(lm, t.prompts, p.n_vectors, s, system=t.system_prompt, seed=seed,
                                        progress=bar).vectors


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
        meta = vector_meta(lm, name=f"random.{i}", method="random", layer=source, site=t.site, radius=t.radius,
                           activation_norm=act_norm, prompts=t.prompts, system=t.system_prompt,
                           extra={"index": i, "seed": seed, "source_layer": source, "target_layer": target})
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


def _cell(run: Run, cfg: UnsupervisedABConfig, model: str, stage: str, q: ABQuestion, invert: bool,
          v: SteeringVector | None, scale: float) -> UnsupervisedCell:
    from steerlab.evals.ab_scoring import question_letters

    behavior, other = question_letters(q, invert)
    name = None if v is None else v.name
    key = make_key(model, stage, q.dataset, q.id, name or "base", scale)
    spec = InterventionSpec()
    if v is not None:
        strength = scale / v.norm if cfg.evaluation.unit_norm else scale
        spec = InterventionSpec(kind="add", vector=f"{model}/{name}", strength=strength)
    return UnsupervisedCell(
        key=key, model=model, seed=run.seed(key), intervention=spec, stage=stage, dataset=q.dataset,  # type: ignore[arg-type]
        question_id=q.id, question=q.render(), letters=list(q.letters), options=[o.text for o in q.options],
        behavior_letter=behavior, other_letter=other, method="none" if v is None else v.meta.method, vector=name,
        scale=scale if v is not None else 0.0)


# ---------------------------------------------------------------------------- the kind


@register_kind
class UnsupervisedAB(ExperimentKind[UnsupervisedABConfig, UnsupervisedCell, UnsupervisedRow, UnsupervisedSummary]):
    """Seed 002 (see the module docstring)."""

    name = "unsupervised_ab"
    Config = UnsupervisedABConfig
    Row = UnsupervisedRow
    Summary = UnsupervisedSummary

    def flow(self, cfg: UnsupervisedABConfig, run: Run) -> UnsupervisedSummary:
        from steerlab.evals.ab import load_ab_questions

        ev = cfg.evaluation
        sets = {d.name: load_ab_questions(d.source, name=d.name, policy=ev.multi_choice, n=d.n_questions,
                                          seed=cfg.seed, balance=ev.rebalance) for d in cfg.datasets}
        invert = {d.name: d.invert for d in cfg.datasets}
        for spec in cfg.models:  # fail early: a model that does not load, layers that do not fit it
            check_layers(cfg, run.model_info(spec).n_layers)

        # 1. vectors: MELBO, power iteration, random controls (each file reused on resume)
        vectors = {spec.name: _stage_vectors(run, cfg, spec) for spec in cfg.models}
        table = {f"{model}/{name}": v for model, vs in vectors.items() for name, v in vs.items()}

        # 2. the A/B grid: per question, unsteered once + every vector × scale; one engine batch per
        #    question, which _score splits into passes of at most ev.batch_size rows
        per_question = 1 + len(next(iter(vectors.values()))) * len(ev.steered_scales)
        cells = [_cell(run, cfg, model, "ab", q, invert[name], v, s)
                 for model, vs in vectors.items() for name, abset in sets.items() for q in abset.questions
                 for v, s in [(None, 0.0)] + [(v, s) for v in vs.values() for s in ev.steered_scales]]
        rows = run.cells(cells, vectors=table, batch_size=per_question, desc=f"A/B grid: {len(cells)} cells")

        # 3. the proxy check: open answers for the top vectors of each method, at their best scale
        info = {name: ABSetInfo.of(s, d) for (name, s), d in zip(sets.items(), cfg.datasets)}
        summaries = {model: summarise_model(cfg, [r for r in rows if r.model == model], info,  # type: ignore[misc]
                                            [vector_info(v) for v in vectors[model].values()])
                     for model in vectors}
        if cfg.proxy_check.enabled:
            p = cfg.proxy_check
            cells = []
            for model, vs in vectors.items():
                for name, abset in sets.items():
                    qs = abset.questions[: p.n_questions]
                    chosen = top_vectors(summaries[model].datasets[name], p.vectors_per_method)
                    cells += [_cell(run, cfg, model, "proxy", q, invert[name], v, s)
                              for v, s in [(None, 0.0)] + [(vs[n], s) for n, s in chosen] for q in qs]
            prow = run.cells(cells, vectors=table, batch_size=p.batch_size, desc=f"proxy check: {len(cells)} answers")
            for model in vectors:
                mine = [r for r in prow if r.model == model]
                summaries[model] = summaries[model].model_copy(
                    update={"proxy": proxy_stats(mine, rows, judge=bool(p.judge_model))})  # type: ignore[arg-type]

        # 4. summary
        return UnsupervisedSummary(name=cfg.name, models=summaries, definitions=DEFINITIONS)

    def run_batch(self, cfg: UnsupervisedABConfig, lm: LanguageModel, cells: Sequence[UnsupervisedCell],
                  ctx: WorkerContext) -> list[UnsupervisedRow]:
        if cells and cells[0].stage == "proxy":
            return _answer(cfg, lm, cells, ctx)
        return _score(cfg, lm, cells, ctx)

    def report(self, cfg: UnsupervisedABConfig, summary: UnsupervisedSummary, out_dir: Path) -> Path:
        from steerlab._io import atomic_write_text
        from steerlab.experiments.studies.unsupervised_ab.plots import violin_plots
        from steerlab.experiments.studies.unsupervised_ab.report import render_report

        plots = {model: violin_plots(m, out_dir, slug(model), METHODS) for model, m in summary.models.items()}
        path = out_dir / "report.md"
        atomic_write_text(path, render_report(cfg, summary, plots))
        return path

    def cell_length(self, cfg: UnsupervisedABConfig, cell: UnsupervisedCell) -> int:
        return len(cell.question)


# ---------------------------------------------------------------------------- worker side


def _prompt(cfg: UnsupervisedABConfig, lm: LanguageModel, cell: UnsupervisedCell, prefix: str | None) -> str:
    conv = lm.format(cell.question, cfg.evaluation.system_prompt)
    return conv + (prefix or "")


def _score(cfg: UnsupervisedABConfig, lm: LanguageModel, cells: Sequence[UnsupervisedCell],
           ctx: WorkerContext) -> list[UnsupervisedRow]:
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
    out: list[UnsupervisedRow | None] = [None] * len(cells)
    for group in groups.values():
        first = cells[group[0]]
        prompt = _prompt(cfg, lm, first, prefix)
        ctx.cached(f"letter-check:{prefix!r}", lambda p=prompt: check_letter_position(lm, p, "A", ids["A"]))  # once
        n_passes = -(-len(group) // ev.batch_size)
        for idx in (group[k::n_passes] for k in range(n_passes)):  # equal passes, no small remainder
            ivs = batch_interventions([cells[i].intervention for i in idx], ctx.vectors)
            scores = score_conditions(lm, prompt, (ids[first.behavior_letter], ids[first.other_letter]), ivs,
                                      len(idx), mass=ev.letter_mass)
            for i, sc in zip(idx, scores):
                out[i] = UnsupervisedRow(**cells[i].model_dump(), logit_behavior=round(sc.logit_behavior, 5),
                                         logit_other=round(sc.logit_other, 5), logit_diff=round(sc.logit_diff, 5),
                                         p_behavior=round(sc.p_behavior, 6), matches=sc.matches,
                                         letter_mass=None if sc.mass is None else round(sc.mass, 6))
    return out  # type: ignore[return-value]


def _answer(cfg: UnsupervisedABConfig, lm: LanguageModel, cells: Sequence[UnsupervisedCell],
            ctx: WorkerContext) -> list[UnsupervisedRow]:
    """Open answers for a batch of proxy cells, parsed (and judged) for the chosen option."""
    from steerlab.evals.ab_choice import parse_choice
    from steerlab.interventions.spec import batch_interventions
    from steerlab.models.backend import user

    p = cfg.proxy_check
    convs = [user(c.question, cfg.evaluation.system_prompt) for c in cells]
    replies = lm.complete(convs, max_new_tokens=p.max_new_tokens, temperature=0.0, batch_size=len(cells),
                          interventions=batch_interventions([c.intervention for c in cells], ctx.vectors))
    parsed = [parse_choice(r.text, c.letters, c.options) for c, r in zip(cells, replies)]
    judged: list[str | None] = [None] * len(cells)
    if p.judge_model:
        judged = _judge(cfg, ctx).judge([_question(c) for c in cells], [r.text for r in replies])
    return [UnsupervisedRow(**c.model_dump(), output=r.text, finish_reason=r.finish_reason, parsed=a, judged=j)
            for c, r, a, j in zip(cells, replies, parsed, judged)]


def _question(cell: UnsupervisedCell) -> ABQuestion:
    from steerlab.evals.ab import parse_question

    return parse_question(cell.question, f" ({cell.behavior_letter})", f" ({cell.other_letter})")


def _judge(cfg: UnsupervisedABConfig, ctx: WorkerContext):
    from steerlab.evals.ab_choice import ChoiceJudge
    from steerlab.models.api import parse_api_spec

    spec = cfg.proxy_check.judge_model
    return ctx.cached(f"choice-judge:{spec}", lambda: ChoiceJudge(
        parse_api_spec(spec) or ctx.aux_model(spec, batch_size=cfg.proxy_check.batch_size)))


def check_layers(cfg: UnsupervisedABConfig, n_layers: int) -> None:
    """Raise ConfigError when the training layers do not fit a model."""
    from steerlab.errors import InputError

    try:
        cfg.training.layers(n_layers)
    except InputError as e:
        raise ConfigError(f"training: {e}") from None
