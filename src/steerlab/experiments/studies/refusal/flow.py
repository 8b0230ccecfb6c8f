"""Seeds 000/001 as one experiment kind: CAA refusal vectors and the fair 4-way comparison.

The flow, top to bottom (:meth:`RefusalStudy.flow`), for every model in the config:
  1. extract  — CAA vectors at the candidate layers from the contrast pairs (vectors/<model>.safetensors)
  2. select   — steer alone at the selection strength on the validation split; choose the layer
  2b. condition — CAST: harmful-minus-benign prompt directions at condition layers below the chosen
                layer; the condition layer, threshold and comparator that classify the validation
                prompts best (studies/refusal/cast.py)
  3. evaluate — base, prompt, steer × strengths, prompt + steer × strengths and CAST on the test
                split, every condition mixed in the same batches (per-row strengths and gates)
  4. summarise the rows on disk into the condition table and the cross-model table
Each batch (:meth:`RefusalStudy.run_batch`) generates replies, judges them (refusal markers,
optionally an LLM judge) and scores their coherence under the unsteered model. The engine
skips finished cells, so rerunning the same command after a crash finishes the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from steerlab._io import slug
from steerlab.errors import ConfigError
from steerlab.experiments.engine.records import make_key
from steerlab.experiments.engine.registry import ExperimentKind, Stage, register_kind
from steerlab.experiments.engine.run import Run
from steerlab.experiments.engine.worker import WorkerContext
from steerlab.experiments.studies.refusal.cast import (
    CastCondition,
    choose_condition,
    condition_layers,
    fit_directions,
    score_prompts,
)
from steerlab.experiments.studies.refusal.config import (
    ExtractionConfig,
    RefusalModelSpec,
    RefusalStudyConfig,
)
from steerlab.experiments.studies.refusal.data import StudyData, load_study_data
from steerlab.experiments.studies.refusal.records import CastGate, RefusalCell, RefusalRow
from steerlab.experiments.studies.refusal.summary import (
    DEFINITIONS,
    ModelSummary,
    RefusalSummary,
    cast_summary,
    choose_layer,
    condition_table,
    cross_model_row,
    optimal_strength,
)
from steerlab.interventions.spec import InterventionSpec
from steerlab.models.hf import LanguageModel
from steerlab.vectors.vector import SteeringVector, VectorSet

if TYPE_CHECKING:
    from steerlab.evals.llm_judge import LLMJudge
    from steerlab.interventions.conditional import Conditional


def candidate_layers(spec: RefusalModelSpec, n_layers: int) -> list[int]:
    """The configured layers, or five layers spread over 30%–60% of the depth."""
    if spec.layers == "middle":
        lo, hi = round(0.3 * (n_layers - 1)), round(0.6 * (n_layers - 1))
        return sorted({round(lo + i * (hi - lo) / 4) for i in range(5)})
    for layer in spec.layers:
        if not -n_layers <= layer < n_layers:
            raise ConfigError(
                f"models.layers: layer {layer} is out of range for {spec.name}, which has {n_layers} layers"
            )
    return [layer % n_layers for layer in spec.layers]


def extract_vectors(
    lm: LanguageModel, data: StudyData, layers: list[int], e: ExtractionConfig, batch_size: int
) -> VectorSet:
    """CAA vectors at ``layers`` from the contrast pairs (a worker task), ``batch_size`` examples a pass."""
    from steerlab.progress import progress_bar
    from steerlab.vectors import Example, extract

    pos = [Example(p.prompt, p.positive) for p in data.pairs]
    neg = [Example(p.prompt, p.negative) for p in data.pairs]
    with progress_bar(f"extract {len(layers)} layers") as bar:
        return extract(
            lm,
            pos,
            neg,
            layers,
            method=e.method,
            site=e.site,
            selector=e.selector,
            normalization=e.normalization,
            batch_size=batch_size,
            progress=bar,
        )


def _cell(
    cfg: RefusalStudyConfig,
    run: Run,
    model: str,
    stage: str,
    condition: str,
    system: bool,
    strength: float,
    layer: int | None,
    p: object,
    gate: CastGate | None = None,
) -> RefusalCell:
    key = (
        make_key(model, stage, layer, strength, p.id)
        if stage == "select"
        else make_key(model, stage, condition, layer if strength else "-", strength, p.id)
    )  # type: ignore[attr-defined]
    steer = (
        InterventionSpec(
            kind="add", vector=f"{model}/{layer}", strength=strength, positions=cfg.conditions.steer_positions
        )
        if strength
        else InterventionSpec()
    )
    return RefusalCell(
        key=key,
        model=model,
        seed=run.seed(key),
        intervention=steer,
        stage=stage,  # type: ignore[arg-type]
        condition=condition,
        system=system,
        strength=strength,  # type: ignore[arg-type]
        layer=layer if strength else None,
        prompt_id=p.id,
        label=p.label or "",  # type: ignore[attr-defined]
        category=p.category,
        style=p.style,
        prompt=p.text,  # type: ignore[attr-defined]
        gate=gate,
    )


# ---------------------------------------------------------------------------- on a worker


def run_batch(
    cfg: RefusalStudyConfig, lm: LanguageModel, cells: Sequence[RefusalCell], ctx: WorkerContext
) -> list[RefusalRow]:
    from steerlab.evals.coherence import CoherenceScorer
    from steerlab.evals.refusal_markers import RefusalMarkerJudge
    from steerlab.interventions.spec import batch_interventions
    from steerlab.models.backend import user

    g = cfg.generation
    convs = [user(c.prompt, cfg.conditions.system_prompt if c.system else None) for c in cells]
    interventions = batch_interventions([c.intervention for c in cells], ctx.vectors)
    cast = _gated(cells, interventions, ctx)
    replies = lm.complete(
        convs,
        max_new_tokens=g.max_new_tokens,
        temperature=g.temperature,
        seed=[c.seed for c in cells],
        batch_size=len(cells),
        interventions=[cast] if cast is not None else interventions,
    )
    scores: list[float | None] = [None] * len(cells)
    gated: list[bool | None] = [None] * len(cells)
    if cast is not None:
        assert cast.scores is not None and cast.gate is not None
        for i, c in enumerate(cells):
            if c.gate is not None:
                scores[i], gated[i] = round(float(cast.scores[i]), 6), bool(cast.gate[i])
    prompts, outputs = [c.prompt for c in cells], [r.text for r in replies]
    markers = RefusalMarkerJudge().judge(prompts, outputs)
    judge = _llm_judge(cfg, ctx)
    llm = judge.judge(prompts, outputs) if judge is not None else [None] * len(cells)
    coherence = CoherenceScorer(lm, batch_size=len(cells)).score(convs, outputs)  # the unsteered model
    return [
        RefusalRow(
            **c.model_dump(),
            output=r.text,
            finish_reason=r.finish_reason,
            verdict_markers=v,
            verdict_llm=lv,
            coherence=round(float(co), 6),
            refused=(lv or v) == "refusal",
            gate_score=sc,
            gated=gt,
        )
        for c, r, v, lv, co, sc, gt in zip(cells, replies, markers, llm, coherence, scores, gated)
    ]


def _gated(cells: Sequence[RefusalCell], interventions: list, ctx: WorkerContext) -> Conditional | None:
    """The batch's interventions under the CAST gate of its gated rows (None when no row is gated).

    Rows without a gate pass through unchanged (``rows`` marks the gated ones)."""
    from steerlab.interventions.conditional import Conditional

    gates = {c.gate for c in cells if c.gate is not None}
    if not gates:
        return None
    if len(gates) > 1:
        raise RuntimeError("refusal study: one batch holds cells with different CAST conditions")
    (g,) = gates
    return Conditional(
        interventions,
        direction=ctx.vectors[g.vector].vector,
        layer=g.layer,
        threshold=g.threshold,
        comparator=g.comparator,
        rows=[c.gate is not None for c in cells],
    )


def cell_length(cfg: RefusalStudyConfig, cell: RefusalCell) -> int:
    """Prompt characters, the system prompt included when the cell uses it."""
    return len(cell.prompt) + (len(cfg.conditions.system_prompt) + 2 if cell.system else 0)


#: validation cells (steering alone at the selection strength) and test cells (every condition)
SELECT = Stage("select", RefusalRow, run_batch, cell_length)
EVAL = Stage("eval", RefusalRow, run_batch, cell_length)


# ---------------------------------------------------------------------------- the kind


@register_kind
class RefusalStudy(ExperimentKind[RefusalStudyConfig, RefusalSummary]):
    """Seeds 000/001 (see the module docstring)."""

    name = "refusal_study"
    Config = RefusalStudyConfig
    Summary = RefusalSummary
    stages = (SELECT, EVAL)

    def flow(self, cfg: RefusalStudyConfig, run: Run) -> RefusalSummary:
        data = load_study_data(cfg.data, cfg.seed)
        c, models = cfg.conditions, [m.name for m in cfg.models]
        layers = {m.name: candidate_layers(m, run.model_info(m).n_layers) for m in cfg.models}

        # 1. extract: one vector per candidate layer and model, saved under vectors/
        vectors = {
            m.name: run.vectors(
                slug(m.name), m, extract_vectors, data, layers[m.name], cfg.extraction, cfg.generation.batch_size
            )
            for m in cfg.models
        }
        table = {f"{model}/{v.layer}": v for model, vs in vectors.items() for v in vs.values()}

        # 2. select: steering alone at the selection strength on the validation split
        cells = [
            _cell(cfg, run, model, "select", "steer", False, c.selection, layer, p)
            for model in models
            for layer in layers[model]
            for p in data.val
        ]
        rows = run.cells(SELECT, cells, vectors=table, desc="choose layers")
        chosen = {
            model: choose_layer(
                [r for r in rows if r.model == model],
                cfg.judges.min_coherence,
                {v.layer: (v.meta.raw_norm, v.meta.activation_norm) for v in vectors[model].values()},
            )
            for model in models
        }

        # 2b. CAST: the condition direction, layer and threshold, on the validation prompts
        conditions: dict[str, CastCondition | None] = {}
        gates: dict[str, CastGate | None] = {}
        for m in cfg.models:
            found = self.condition(cfg, run, m, data, chosen[m.name].layer)
            conditions[m.name], gates[m.name] = None, None
            if found is not None:
                cond, direction = found
                name = f"{m.name}/cond{cond.layer}"
                table[name] = direction
                conditions[m.name] = cond
                gates[m.name] = CastGate(
                    vector=name, layer=cond.layer, threshold=cond.threshold, comparator=cond.comparator
                )

        # 3. evaluate every condition at the chosen layer on the test split, conditions mixed in batches
        grid = [("base", False, 0.0), ("prompt", True, 0.0)]
        grid += [("steer", False, s) for s in c.strengths] + [("prompt+steer", True, s) for s in c.strengths]
        cells = [
            _cell(cfg, run, model, "eval", cond, system, s, chosen[model].layer, p)
            for model in models
            for cond, system, s in grid
            for p in data.test
        ]
        cells += [
            _cell(cfg, run, model, "eval", "cast", False, self.cast_strength(cfg), chosen[model].layer, p, gate)
            for model, gate in gates.items()
            if gate is not None
            for p in data.test
        ]
        rows = run.cells(EVAL, cells, vectors=table, desc=f"evaluate {len(cells)} cells")

        # 4. summarise
        return self.summarise_models(cfg, rows, chosen, conditions)

    @staticmethod
    def cast_strength(cfg: RefusalStudyConfig) -> float:
        """The steering strength of CAST's gated rows (the selection strength unless configured)."""
        return cfg.cast.strength if cfg.cast.strength is not None else cfg.conditions.selection

    def condition(
        self, cfg: RefusalStudyConfig, run: Run, spec: RefusalModelSpec, data: StudyData, steer_layer: int
    ) -> tuple[CastCondition, SteeringVector] | None:
        """CAST's condition for one model, chosen on the validation prompts, and its direction
        (None when CAST is off)."""
        if not cfg.cast.enabled:
            return None
        layers = condition_layers(spec.condition_layers, steer_layer)
        if not layers:
            raise ConfigError(
                f"cast: no condition layer below the steering layer {steer_layer} of {spec.name}; "
                "list models.condition_layers below it, or set cast.enabled: false"
            )
        bs = cfg.generation.batch_size
        dirs = run.vectors(f"{slug(spec.name)}_condition", spec, fit_directions, data.val, layers, bs)
        by_layer = {v.layer: v.vector for v in dirs.values()}

        def make() -> CastCondition:
            scores = run.task(spec, score_prompts, [p.text for p in data.val], by_layer, bs)
            return choose_condition(scores, [p.label or "" for p in data.val])

        cond = run.json_once(f"cast_condition_{slug(spec.name)}.json", CastCondition, make)
        return cond, dirs[cond.layer]

    def summarise_models(
        self,
        cfg: RefusalStudyConfig,
        rows: Sequence[RefusalRow],
        chosen: dict,
        conditions: dict[str, CastCondition | None] | None = None,
    ) -> RefusalSummary:
        out, cross = {}, []
        for spec in cfg.models:
            model_rows = [r for r in rows if r.model == spec.name]
            table = condition_table(model_rows, cfg.bootstrap_resamples, cfg.seed)
            cond = (conditions or {}).get(spec.name)
            steer = optimal_strength(table, "steer", cfg.judges.min_coherence)
            both = optimal_strength(table, "prompt+steer", cfg.judges.min_coherence)
            out[spec.name] = ModelSummary(
                layer_selection=chosen[spec.name],
                conditions=table,
                agreement=_agreement(model_rows),
                optimal_steer=steer.strength if steer else None,
                optimal_prompt_steer=both.strength if both else None,
                plot=f"rates_vs_strength_{slug(spec.name)}.png",
                cast=cast_summary(cond, model_rows, table, cfg.judges.min_coherence) if cond else None,
            )
            cross.append(cross_model_row(spec.name, table, cfg.judges.min_coherence))
        return RefusalSummary(
            name=cfg.name,
            models=out,
            cross_model=cross,
            min_coherence=cfg.judges.min_coherence,
            definitions=DEFINITIONS,
        )

    def report(self, cfg: RefusalStudyConfig, summary: RefusalSummary, out_dir: Path) -> Path:
        from steerlab._io import atomic_write_text
        from steerlab.experiments.studies.refusal.plots import plot_rates_vs_strength
        from steerlab.experiments.studies.refusal.report import render_report

        for label, m in summary.models.items():
            plot_rates_vs_strength(m.conditions, out_dir / m.plot, title=label)
        path = out_dir / "report.md"
        atomic_write_text(path, render_report(cfg, summary))
        return path


def _llm_judge(cfg: RefusalStudyConfig, ctx: WorkerContext) -> LLMJudge | None:
    from steerlab.evals.llm_judge import LLMJudge

    spec = cfg.judges.llm_judge_model
    return ctx.judge(spec, LLMJudge, batch_size=cfg.generation.batch_size) if spec else None


def _agreement(rows: Sequence[RefusalRow]) -> dict | None:
    if not rows or rows[0].verdict_llm is None:
        return None
    from steerlab.evals.agreement import judge_agreement

    return judge_agreement(
        [r.verdict_markers for r in rows],
        [r.verdict_llm for r in rows],  # type: ignore[misc]
        judge_a="markers",
        judge_b="llm",
    ).to_dict()
