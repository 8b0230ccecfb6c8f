"""Seed 004's concept-vector steering of stated ratings, with the coherence filter.

The flow (:meth:`PrefsSteering.flow`), for the (first) model:
  1. complete — the model answers every task unsteered
  2. vectors  — one concept vector per token selector ("You love math." − "You hate math." by
                default), normalised to the mean activation norm at its layer, so strength 0.1
                adds 10% of a typical activation (seed 004's fix after un-normalised vectors broke
                coherence)
  3. open     — open-ended questions ("How do you feel about math?") answered under every
                (selector, strength); each reply's coherence is scored by the UNSTEERED model.
                A strength is *kept* when its mean coherence ≥ ``min_coherence``
  4. rate     — every completion rated under every (selector, strength): the answer distribution
                from one pass (and sampled replies if ``rating.seeds`` > 0). Every strength of the
                sweep shares the same batches: one strength per row
  5. summarise — mean rating per (selector, strength, origin) with bootstrap intervals, the
                coherence per strength, and the rating-vs-strength slope over kept strengths only
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from steerlab.experiments.engine.records import Record, Summary, make_key
from steerlab.experiments.engine.registry import register_kind
from steerlab.experiments.engine.run import Run
from steerlab.experiments.studies.prefs.common import (
    PrefCell,
    PrefsStudyConfig,
    RatingConfig,
    TasksConfig,
    completion_cells,
    first_template_and_tasks,
    rating_cells,
    ratings_frame,
    usable,
)
from steerlab.experiments.studies.prefs.concept import ConceptConfig, concept_vector
from steerlab.experiments.studies.prefs.records import PrefRow
from steerlab.experiments.studies.prefs.stages import COMPLETE, OPEN, RATE, PrefsKind
from steerlab.experiments.studies.prefs.summary import Estimate, fin, mean, per_completion
from steerlab.interventions.spec import InterventionSpec

DEFINITIONS = """\
strength          multiplier of the concept vector, whose norm is the mean activation norm at its
                  layer: 0.1 adds 10% of a typical activation (0 = unsteered)
rating            per completion, the expected rating from the answer-token distribution of the
                  steered model (one pass); mean [95% bootstrap CI] (n)
coherence         of the greedy replies to the open-ended questions under the same steering, scored by
                  the unsteered model (steerlab.evals.coherence: fluency × (1 − repetition))
kept              strengths whose mean coherence ≥ min_coherence; the slope (rating points per unit
                  strength, least squares) uses kept strengths only"""

QUESTIONS = [
    "How do you feel about math?",
    "What do you think about solving equations?",
    "Do you enjoy working with numbers? Tell me honestly.",
    "Describe your attitude towards arithmetic.",
]


class PrefsSteeringConfig(PrefsStudyConfig):
    """Concept-vector steering of stated ratings."""

    kind: Literal["prefs_steering"] = Field("prefs_steering", description="experiment kind")
    name: str = Field("prefs_steering", description="run name")
    tasks: TasksConfig = TasksConfig(origins=["math", "wildchat"], n_per_origin=4)
    concept: ConceptConfig = ConceptConfig()
    selectors: list[Literal["last", "first", "mean"]] = Field(
        ["last"], min_length=1, description="token selectors to make vectors with"
    )
    strengths: list[float] = Field([-0.2, -0.1, 0.0, 0.1, 0.2], min_length=2, description="the sweep")
    positions: str = Field("all", description="tokens steered: all, prompt, generated, last:K")
    questions: list[str] = Field(QUESTIONS, min_length=1, description="open-ended questions for the coherence check")
    open_max_new_tokens: int = Field(32, ge=4, description="tokens per open-ended reply")
    min_coherence: float = Field(0.3, ge=0, le=1, description="strengths below this mean coherence are not kept")
    rating: RatingConfig = RatingConfig(templates=["anchored_precise_1_5"], seeds=0)

    @field_validator("strengths")
    @classmethod
    def _distinct(cls, v: list[float]) -> list[float]:
        if len(set(v)) != len(v):
            raise ValueError("strengths must be distinct")
        return sorted(v)


class SweepPoint(Record):
    selector: str
    strength: float
    origin: str = Field(description="an origin, or 'all'")
    rating: Estimate
    coherence: Estimate
    kept: bool


class SelectorSlope(Record):
    selector: str
    slope: float | None = Field(description="rating points per unit strength over kept strengths")
    kept: list[float]
    examples: dict[str, str] = Field(description="strength → an open-ended reply")


class PrefsSteeringSummary(Summary):
    template: str
    scale: list[float]
    layer: int | None
    points: list[SweepPoint]
    slopes: list[SelectorSlope]
    ratings: dict[str, dict[str, list[float]]] = Field(description="selector → strength → per-completion ratings")


@register_kind
class PrefsSteering(PrefsKind):
    """Concept-vector steering of ratings (see the module docstring)."""

    name = "prefs_steering"
    Config = PrefsSteeringConfig
    Summary = PrefsSteeringSummary

    def report(self, cfg: PrefsSteeringConfig, summary: PrefsSteeringSummary, out_dir: Path) -> Path:
        from steerlab.experiments.studies.prefs.report_comparisons import render_steering

        return render_steering(cfg, summary, out_dir, DEFINITIONS)

    def flow(self, cfg: PrefsSteeringConfig, run: Run) -> PrefsSteeringSummary:
        template, tasks, by_id = first_template_and_tasks(cfg)
        spec = cfg.models[0]
        model = spec.name

        # 1. unsteered completions
        comps = usable(
            run.cells(
                COMPLETE,
                completion_cells(run, cfg, tasks, model=model, agent=model),
                batch_size=cfg.batch_size,
                desc="complete",
            ),
            cfg,
        )

        # 2. one concept vector per selector (normalised to the mean activation norm)
        table = {
            sel: concept_vector(run, spec, tasks, cfg.concept.model_copy(update={"selector": sel}))
            for sel in cfg.selectors
        }

        def steer(sel: str, s: float) -> InterventionSpec:
            return (
                InterventionSpec(kind="add", vector=sel, strength=s, positions=cfg.positions)
                if s
                else InterventionSpec()
            )

        # 3. open-ended replies under every (selector, strength), for the coherence filter
        cells = []
        for sel in cfg.selectors:
            for s in cfg.strengths:
                for q, text in enumerate(cfg.questions):
                    key = make_key("open", sel, s, q)
                    cells.append(
                        PrefCell(
                            key=key,
                            model=model,
                            seed=run.seed(key),
                            intervention=steer(sel, s),
                            stage="open",
                            agent=f"{model}@{sel}",
                            item=f"q{q}",
                            origin="open",
                            messages=[{"role": "user", "content": text}],
                            max_new_tokens=cfg.open_max_new_tokens,
                            strength=s,
                        )
                    )
        opens = run.cells(OPEN, cells, vectors=table, batch_size=cfg.batch_size, desc="open-ended replies")

        # 4. ratings under every (selector, strength): per-row strengths share batches
        cells = [
            c
            for sel in cfg.selectors
            for s in cfg.strengths
            for c in rating_cells(
                run,
                template,
                comps,
                by_id,
                model=model,
                agent=f"{model}@{sel}",
                rating=cfg.rating,
                intervention=steer(sel, s),
                strength=s,
                tag=sel,
            )
        ]
        rows = run.cells(RATE, cells, vectors=table, batch_size=cfg.batch_size, desc=f"rate: {len(cells)} cells")

        # 5. summarise
        layer = next(iter(table.values())).layer if table else None
        return summarise(cfg, template, opens, rows, layer)


def summarise(
    cfg: PrefsSteeringConfig, template, opens: Sequence[PrefRow], rows: Sequence[PrefRow], layer: int | None
) -> PrefsSteeringSummary:
    """The sweep table, coherence filter and slopes from the rows alone."""
    frame = ratings_frame(rows)
    use_dist = bool(cfg.rating.distribution) and frame["expected"].notna().any()
    ratings = per_completion(frame, use_dist)
    model = cfg.models[0].name
    points, slopes, by_strength = [], [], {}
    for sel in cfg.selectors:
        agent = f"{model}@{sel}"
        mine = ratings[ratings["rater"] == agent]
        kept, xs, ys, examples = [], [], [], {}
        by_strength[sel] = {}
        for s in cfg.strengths:
            coh = [r.coherence for r in opens if r.agent == agent and r.strength == s and r.coherence is not None]
            coherence = mean(coh, cfg.bootstrap_resamples, cfg.seed)
            ok = coherence.value is not None and coherence.value >= cfg.min_coherence
            reply = next((r.text for r in opens if r.agent == agent and r.strength == s), None)
            examples[f"{s:g}"] = (reply or "")[:160]
            at = mine[mine["strength"] == s]
            by_strength[sel][f"{s:g}"] = [round(float(v), 4) for v in at["rating"]]
            if ok:
                kept.append(s)
                xs += [s] * len(at)
                ys += list(at["rating"])
            for origin in [*sorted(at["origin"].unique()), "all"]:
                part = at if origin == "all" else at[at["origin"] == origin]
                points.append(
                    SweepPoint(
                        selector=sel,
                        strength=s,
                        origin=origin,
                        coherence=coherence,
                        kept=ok,
                        rating=mean(list(part["rating"]), cfg.bootstrap_resamples, cfg.seed),
                    )
                )
        slope = fin(np.polyfit(xs, ys, 1)[0]) if len(set(xs)) >= 2 else None
        slopes.append(SelectorSlope(selector=sel, slope=slope, kept=kept, examples=examples))
    return PrefsSteeringSummary(
        name=cfg.name,
        template=template.name,
        scale=list(template.scale.values),
        layer=layer,
        points=points,
        slopes=slopes,
        ratings=by_strength,
    )
