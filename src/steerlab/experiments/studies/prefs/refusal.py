"""Seed 004's refusal–preference correlation: are refused tasks the ones rated low?

The flow (:meth:`PrefsRefusal.flow`), for every model in the config (self-rating):
  1. complete — the model answers every task; each reply gets the refusal-marker verdict
                (:mod:`steerlab.evals.refusal_markers`; an LLM judge is future work here)
  2. rate     — the model rates every non-empty completion (sampled replies + one answer distribution)
  3. summarise — per origin and overall: refusal rate (Wilson interval), mean rating of refused and
                of answered tasks, and the point-biserial correlation between refusal and rating
                (undefined, shown as "–", when an origin has no refusal, as ALPACA and MATH in the seed)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from steerlab.experiments.engine.records import Summary
from steerlab.experiments.engine.registry import register_kind
from steerlab.experiments.engine.run import Run
from steerlab.experiments.studies.prefs.common import (
    PrefsStudyConfig,
    RatingConfig,
    completion_cells,
    first_template_and_tasks,
    rating_cells,
    ratings_frame,
    usable,
)
from steerlab.experiments.studies.prefs.records import PrefRow
from steerlab.experiments.studies.prefs.stages import COMPLETE, RATE, PrefsKind
from steerlab.experiments.studies.prefs.summary import (
    RefusalGroup,
    per_completion,
    refusal_group,
)

DEFINITIONS = """\
refused           the completion's refusal-marker verdict is "refusal" (first 200 characters hold a
                  known refusal phrase; steerlab.evals.refusal_markers)
rating            per completion: the expected rating from the answer-token distribution (one pass)
                  when available, else the mean parsed sampled rating
r_pb              point-biserial correlation between refused (1/0) and rating, with its two-sided p;
                  undefined ("–") when a group has no refused or no answered task
intervals         Wilson 95% for the refusal rate, percentile bootstrap 95% for mean ratings"""


class PrefsRefusalConfig(PrefsStudyConfig):
    """Refusal–preference correlation by origin."""

    kind: Literal["prefs_refusal"] = Field("prefs_refusal", description="experiment kind")
    name: str = Field("prefs_refusal", description="run name")
    rating: RatingConfig = RatingConfig(templates=["anchored_precise_1_5"], seeds=1)


class PrefsRefusalSummary(Summary):
    template: str
    groups: list[RefusalGroup]
    examples: list[str] = Field(description="a few refused completions")


@register_kind
class PrefsRefusal(PrefsKind):
    """Refusal–preference correlation (see the module docstring)."""

    name = "prefs_refusal"
    Config = PrefsRefusalConfig
    Summary = PrefsRefusalSummary

    def report(self, cfg: PrefsRefusalConfig, summary: PrefsRefusalSummary, out_dir: Path) -> Path:
        from steerlab.experiments.studies.prefs.report_comparisons import render_refusal

        return render_refusal(cfg, summary, out_dir, DEFINITIONS)

    def flow(self, cfg: PrefsRefusalConfig, run: Run) -> PrefsRefusalSummary:
        template, tasks, by_id = first_template_and_tasks(cfg)

        # 1. complete (each reply gets its refusal-marker verdict)
        cells = [c for m in cfg.models for c in completion_cells(run, cfg, tasks, model=m.name, agent=m.name)]
        comps = run.cells(COMPLETE, cells, batch_size=cfg.batch_size, desc="complete")

        # 2. self-rating of every non-empty completion
        cells = [
            c
            for m in cfg.models
            for c in rating_cells(
                run,
                template,
                [r for r in usable(comps, cfg) if r.agent == m.name],
                by_id,
                model=m.name,
                agent=m.name,
                rating=cfg.rating,
            )
        ]
        rows = run.cells(RATE, cells, batch_size=cfg.batch_size, desc=f"rate: {len(cells)} cells")

        # 3. summarise
        return summarise(cfg, template, comps, rows)


def summarise(
    cfg: PrefsRefusalConfig, template, comps: Sequence[PrefRow], rows: Sequence[PrefRow]
) -> PrefsRefusalSummary:
    """Per-origin refusal–rating statistics from the completion and rating rows alone."""
    frame = ratings_frame(rows)
    use_dist = bool(cfg.rating.distribution) and frame["expected"].notna().any()
    ratings = per_completion(frame, use_dist).set_index(["rater", "item"])["rating"]
    groups = []
    for m in cfg.models:
        mine = [c for c in comps if c.agent == m.name]
        origins = sorted({c.origin for c in mine})
        for origin in [*origins, "all"]:
            part = [c for c in mine if origin == "all" or c.origin == origin]
            refused = np.array([c.refusal == "refusal" for c in part], dtype=int)
            vals = np.array([ratings.get((m.name, c.item), np.nan) for c in part], dtype=float)
            groups.append(refusal_group(m.name, origin, refused, vals, cfg.bootstrap_resamples, cfg.seed))
    examples = [f"{c.item}: {c.text!r}"[:120] for c in comps if c.refusal == "refusal"][:4]
    return PrefsRefusalSummary(name=cfg.name, template=template.name, groups=groups, examples=examples)
