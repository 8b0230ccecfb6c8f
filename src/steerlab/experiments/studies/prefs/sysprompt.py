"""Seed 004's 3×3 system-prompt grid: does a stated rating reflect the completion experience or
the measurement context?

The flow (:meth:`PrefsSysprompt.flow`), for the (first) model:
  1. complete — every task under every completion persona ("You love math." / none / "You hate
                math."), each persona prefixed with "Do not mention these instructions." unless
                turned off; every completion is checked for mentions of its system prompt
  2. rate     — every usable completion under every measurement context (the same three
                prompts as system prompt of the rating conversation, by default): sampled replies
                and one answer distribution per (completion, context)
  3. summarise — mean rating per (persona × context × origin) with bootstrap intervals; the
                context effect (spread of means across contexts, averaged over personas) against
                the completion effect (spread across personas, averaged over contexts); the
                mention check per persona (the reference confound)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from steerlab.experiments.engine.records import Record, Summary
from steerlab.experiments.engine.registry import register_kind
from steerlab.experiments.engine.run import Run
from steerlab.experiments.studies.prefs.common import (
    PrefsStudyConfig,
    RatingConfig,
    TasksConfig,
    completion_cells,
    first_template_and_tasks,
    rating_cells,
    ratings_frame,
    usable,
)
from steerlab.experiments.studies.prefs.records import PrefRow
from steerlab.experiments.studies.prefs.stages import COMPLETE, RATE, PrefsKind
from steerlab.experiments.studies.prefs.summary import Estimate, fin, mean, per_completion

DEFINITIONS = """\
persona           completion-time system prompt (prefixed "Do not mention these instructions." when set)
context           measurement-time system prompt of the rating conversation
rating            the expected rating from the answer-token distribution (one pass) when available,
                  else the mean of the parsed sampled replies; cells show mean [95% bootstrap CI] (n)
context effect    for each persona, max − min of the context means; averaged over personas
completion effect for each context, max − min of the persona means; averaged over contexts
mentions          completions flagged by the lexical mention check (steerlab.prefs.completions);
                  they are left out of the ratings when completion.exclude_mentions is on"""


class PrefsSyspromptConfig(PrefsStudyConfig):
    """The 3×3 grid: completion persona × measurement context."""

    kind: Literal["prefs_sysprompt"] = Field("prefs_sysprompt", description="experiment kind")
    name: str = Field("prefs_sysprompt", description="run name")
    tasks: TasksConfig = TasksConfig(origins=["math"])
    personas: dict[str, str | None] = Field(
        {"love math": "You love math.", "none": None, "hate math": "You hate math."},
        description="completion-time system prompts by name (null = none), in plot order",
    )
    contexts: dict[str, str | None] | None = Field(
        None, description="measurement-time system prompts by name (default: the personas)"
    )
    rating: RatingConfig = RatingConfig(templates=["anchored_precise_1_5"], seeds=2)

    @field_validator("personas", "contexts")
    @classmethod
    def _some(cls, v: dict | None) -> dict | None:
        if v is not None and not v:
            raise ValueError("give at least one prompt")
        return v

    @property
    def context_prompts(self) -> dict[str, str | None]:
        return self.contexts if self.contexts is not None else self.personas


class GridCell(Record):
    """Ratings of one (persona, context, origin) cell of the grid."""

    persona: str
    context: str
    origin: str
    rating: Estimate = Field(description="per-completion rating (see DEFINITIONS), mean with bootstrap CI")
    sampled: Estimate = Field(description="mean of parsed sampled ratings")
    unparseable: int
    values: list[float] = Field(description="the per-completion ratings (for the violins)")


class MentionCount(Record):
    persona: str
    n: int
    flagged: int
    examples: list[str]


class PrefsSyspromptSummary(Summary):
    template: str
    scale: list[float]
    source: Literal["distribution", "sampled"]
    grid: list[GridCell]
    context_effect: float | None
    completion_effect: float | None
    mentions: list[MentionCount]


@register_kind
class PrefsSysprompt(PrefsKind):
    """The 3×3 system-prompt grid (see the module docstring)."""

    name = "prefs_sysprompt"
    Config = PrefsSyspromptConfig
    Summary = PrefsSyspromptSummary

    def report(self, cfg: PrefsSyspromptConfig, summary: PrefsSyspromptSummary, out_dir: Path) -> Path:
        from steerlab.experiments.studies.prefs.report import render_sysprompt

        return render_sysprompt(cfg, summary, out_dir, DEFINITIONS)

    def flow(self, cfg: PrefsSyspromptConfig, run: Run) -> PrefsSyspromptSummary:
        from steerlab.prefs.completions import completion_system_prompt

        template, tasks, by_id = first_template_and_tasks(cfg)
        model = cfg.models[0].name

        # 1. complete under every persona (mentions of the persona are flagged per row)
        cells = [
            c
            for persona, text in cfg.personas.items()
            for c in completion_cells(
                run,
                cfg,
                tasks,
                model=model,
                agent=model,
                persona=persona,
                system=completion_system_prompt(text, cfg.completion.do_not_mention),
            )
        ]
        comps = run.cells(COMPLETE, cells, batch_size=cfg.batch_size, desc="complete under each persona")

        # 2. rate every usable completion under every measurement context
        cells = [
            c
            for context, text in cfg.context_prompts.items()
            for c in rating_cells(
                run,
                template,
                usable(comps, cfg),
                by_id,
                model=model,
                agent=model,
                rating=cfg.rating,
                context=context,
                context_text=text,
            )
        ]
        rows = run.cells(RATE, cells, batch_size=cfg.batch_size, desc=f"rate: {len(cells)} cells")

        # 3. summarise
        return summarise(cfg, template, comps, rows)


def spread_effect(means: dict[tuple[str, str], float], outer: Sequence[str], inner: Sequence[str]) -> float | None:
    """For each ``outer`` level, max − min over ``inner`` levels of ``means[(outer, inner)]``; averaged."""
    spreads = []
    for o in outer:
        vals = [means[(o, i)] for i in inner if (o, i) in means]
        if len(vals) >= 2:
            spreads.append(max(vals) - min(vals))
    return fin(np.mean(spreads)) if spreads else None


def summarise(
    cfg: PrefsSyspromptConfig, template, comps: Sequence[PrefRow], rows: Sequence[PrefRow]
) -> PrefsSyspromptSummary:
    """The summary from the completion and rating rows alone."""
    frame = ratings_frame(rows)
    use_dist = bool(cfg.rating.distribution) and frame["expected"].notna().any()
    ratings = per_completion(frame, use_dist)
    grid, means = [], {}
    for (persona, context, origin), part in ratings.groupby(["persona", "context", "origin"], sort=False):
        sampled = frame[
            (frame["mode"] == "sample")
            & (frame["persona"] == persona)
            & (frame["context"] == context)
            & (frame["origin"] == origin)
        ]
        vals = part["rating"].to_numpy(dtype=float)
        grid.append(
            GridCell(
                persona=persona,
                context=context,
                origin=origin,
                rating=mean(list(vals), cfg.bootstrap_resamples, cfg.seed),
                sampled=mean(list(sampled["value"].dropna()), cfg.bootstrap_resamples, cfg.seed),
                unparseable=int(sampled["value"].isna().sum()),
                values=[round(float(v), 4) for v in vals],
            )
        )
    for (persona, context), part in ratings.groupby(["persona", "context"]):
        means[(persona, context)] = float(part["rating"].mean())
    personas, contexts = list(cfg.personas), list(cfg.context_prompts)
    flipped = {(c, p): v for (p, c), v in means.items()}
    mentions = []
    for persona in personas:
        mine = [r for r in comps if r.persona == persona]
        flagged = [r for r in mine if r.mentions_system]
        mentions.append(
            MentionCount(
                persona=persona, n=len(mine), flagged=len(flagged), examples=[repr(r.text)[:100] for r in flagged[:3]]
            )
        )
    return PrefsSyspromptSummary(
        name=cfg.name,
        template=template.name,
        scale=list(template.scale.values),
        source="distribution" if use_dist else "sampled",
        grid=grid,
        context_effect=spread_effect(means, personas, contexts),
        completion_effect=spread_effect(flipped, contexts, personas),
        mentions=mentions,
    )
