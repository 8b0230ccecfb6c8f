"""Seed 004's self- vs cross-rating matrix: do raters rate their own completions differently?

An *agent* is a model as it behaves: a model label, optionally with a system prompt it always
has (at completion and at rating time) and optionally steered along a concept vector. With
one local model, agents that differ by prompt or steering stand in for different models;
list several models to get the seed's model × model matrix.

The flow (:meth:`PrefsSelfCross.flow`):
  1. vectors  — the concept vector of each steered agent's model (normalised to the mean
                activation norm), saved under vectors/
  2. complete — every agent answers every task
  3. rate     — every agent rates every agent's usable completions (the full matrix), sampled
                replies over seeds plus one answer distribution
  4. summarise — per (rater, completer): ICC across seeds, mean rating, KL from uniform; the
                self (diagonal) vs cross (off-diagonal) comparison with a Mann-Whitney test
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from steerlab.experiments.engine.config import Strict
from steerlab.experiments.engine.records import (
    NO_INTERVENTION,
    InterventionSpec,
    Record,
    Summary,
)
from steerlab.experiments.engine.registry import register_kind
from steerlab.experiments.engine.run import Run
from steerlab.experiments.studies.prefs.common import (
    PrefsStudyConfig,
    RatingConfig,
    completion_cells,
    first_template_and_tasks,
    rating_cells,
    ratings_frame,
    system_turn,
    usable,
)
from steerlab.experiments.studies.prefs.concept import ConceptConfig, concept_vector
from steerlab.experiments.studies.prefs.records import PrefRow
from steerlab.experiments.studies.prefs.stages import COMPLETE, RATE, PrefsKind
from steerlab.experiments.studies.prefs.summary import ConditionEntry, condition_entry, fin

DEFINITIONS = """\
agent             a model as it behaves: its label, an optional system prompt it always has (when
                  completing and when rating), an optional steering strength along the concept vector
ICC               ICC(A,1) of the rater's sampled ratings across seeds, items as targets
mean              mean expected rating from the answer-token distribution (one pass), or the mean
                  sampled rating when distributions are off
KL                KL(sampled rating distribution ‖ uniform over the declared values), nats
self / cross      diagonal (rater = completer) / off-diagonal cells of the matrix; compared with a
                  two-sided Mann-Whitney U test over cells (few cells: read it as descriptive)"""


class AgentSpec(Strict):
    """One agent (see the module docstring)."""

    name: str = Field(description="label in tables and plots")
    model: str | None = Field(None, description="label of the model (default: the first model)")
    system: str | None = Field(None, description="system prompt the agent always has")
    strength: float = Field(0.0, description="steering strength along the concept vector (0 = none)")


class PrefsSelfCrossConfig(PrefsStudyConfig):
    """Self vs cross rating over a matrix of agents."""

    kind: Literal["prefs_self_cross"] = Field("prefs_self_cross", description="experiment kind")
    name: str = Field("prefs_self_cross", description="run name")
    agents: list[AgentSpec] | None = Field(None, min_length=2, description="agents (default: one per model)")
    concept: ConceptConfig = ConceptConfig()
    rating: RatingConfig = RatingConfig(templates=["fruit_rating"], seeds=3)

    @model_validator(mode="after")
    def _agents(self) -> PrefsSelfCrossConfig:
        labels = {m.name for m in self.models}
        names = [a.name for a in self.agent_list]
        if len(set(names)) != len(names):
            raise ValueError("agents: two agents share a name")
        if len(names) < 2:
            raise ValueError("agents: the matrix needs at least two agents (or two models)")
        for a in self.agent_list:
            if a.model is not None and a.model not in labels:
                raise ValueError(f"agents: {a.name!r} names model {a.model!r}, which is not a model label")
        return self

    @property
    def agent_list(self) -> list[AgentSpec]:
        return self.agents if self.agents is not None else [AgentSpec(name=m.name, model=m.name) for m in self.models]


class MatrixCell(Record):
    rater: str
    completer: str
    self_rating: bool
    entry: ConditionEntry
    mean: float | None = Field(description="mean rating (see DEFINITIONS)")


class SelfCrossStat(Record):
    metric: str
    self_mean: float | None
    self_sd: float | None
    self_n: int
    cross_mean: float | None
    cross_sd: float | None
    cross_n: int
    p_value: float | None


class PrefsSelfCrossSummary(Summary):
    template: str
    agents: list[str]
    cells: list[MatrixCell]
    self_vs_cross: list[SelfCrossStat]


@register_kind
class PrefsSelfCross(PrefsKind):
    """Self vs cross rating (see the module docstring)."""

    name = "prefs_self_cross"
    Config = PrefsSelfCrossConfig
    Summary = PrefsSelfCrossSummary

    def report(self, cfg: PrefsSelfCrossConfig, summary: PrefsSelfCrossSummary, out_dir: Path) -> Path:
        from steerlab.experiments.studies.prefs.report_comparisons import render_self_cross

        return render_self_cross(cfg, summary, out_dir, DEFINITIONS)

    def flow(self, cfg: PrefsSelfCrossConfig, run: Run) -> PrefsSelfCrossSummary:
        template, tasks, by_id = first_template_and_tasks(cfg)
        agents = cfg.agent_list
        model_of = {a.name: a.model or cfg.models[0].name for a in agents}

        # 1. concept vectors of the models of steered agents
        table = {
            f"concept/{m}": concept_vector(run, run.spec(m), tasks, cfg.concept)
            for m in sorted({model_of[a.name] for a in agents if a.strength})
        }

        def steer(a: AgentSpec) -> InterventionSpec:
            return (
                InterventionSpec(kind="add", vector=f"concept/{model_of[a.name]}", strength=a.strength)
                if a.strength
                else NO_INTERVENTION
            )

        # 2. every agent completes every task
        cells = [
            c
            for a in agents
            for c in completion_cells(
                run, cfg, tasks, model=model_of[a.name], agent=a.name, system=a.system, intervention=steer(a)
            )
        ]
        comps = usable(run.cells(COMPLETE, cells, vectors=table, batch_size=cfg.batch_size, desc="complete"), cfg)

        # 3. every agent rates every agent's completions (its own system prompt before the rating turns)
        cells = []
        for a in agents:
            for c in rating_cells(
                run,
                template,
                comps,
                by_id,
                model=model_of[a.name],
                agent=a.name,
                rating=cfg.rating,
                intervention=steer(a),
            ):
                cells.append(c.model_copy(update={"messages": system_turn(a.system) + c.messages}))
        rows = run.cells(RATE, cells, vectors=table, batch_size=cfg.batch_size, desc=f"rate: {len(cells)} cells")

        # 4. summarise
        return summarise(cfg, template, rows)


def summarise(cfg: PrefsSelfCrossConfig, template, rows: Sequence[PrefRow]) -> PrefsSelfCrossSummary:
    """The matrix and the self-vs-cross comparison from the rating rows alone."""
    from steerlab.stats import mann_whitney

    frame = ratings_frame(rows)
    names = [a.name for a in cfg.agent_list]
    cells = []
    for rater in names:
        for completer in names:
            part = frame[(frame["rater"] == rater) & (frame["completer"] == completer)]
            e = condition_entry(
                rater,
                template,
                part[part["mode"] == "sample"],
                part[part["mode"] == "dist"],
                f"{rater} rates {completer}",
            )
            cells.append(
                MatrixCell(
                    rater=rater,
                    completer=completer,
                    self_rating=rater == completer,
                    entry=e,
                    mean=e.dist_expected if e.dist_expected is not None else e.mean,
                )
            )
    stats = []
    for metric, get in (
        ("ICC(A,1)", lambda c: c.entry.icc_a1),
        ("mean", lambda c: c.mean),
        ("KL", lambda c: c.entry.kl),
    ):
        own = np.array([get(c) for c in cells if c.self_rating and get(c) is not None], dtype=float)
        other = np.array([get(c) for c in cells if not c.self_rating and get(c) is not None], dtype=float)
        p = None
        if own.size and other.size and np.ptp(np.concatenate([own, other])) > 0:
            p = fin(mann_whitney(own, other).p_value)
        stats.append(
            SelfCrossStat(
                metric=metric,
                self_mean=fin(own.mean()) if own.size else None,
                self_sd=fin(own.std(ddof=1)) if own.size > 1 else None,
                self_n=int(own.size),
                cross_mean=fin(other.mean()) if other.size else None,
                cross_sd=fin(other.std(ddof=1)) if other.size > 1 else None,
                cross_n=int(other.size),
                p_value=p,
            )
        )
    return PrefsSelfCrossSummary(name=cfg.name, template=template.name, agents=names, cells=cells, self_vs_cross=stats)
