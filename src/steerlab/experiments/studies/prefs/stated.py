"""Seed 004's stated-rating reliability studies as one kind: seed sensitivity, template
discrimination (KL vs ICC) and task consistency.

The flow (:meth:`PrefsStated.flow`):
  1. complete — the completer model answers every task (greedy by default)
  2. rate     — every model in the config rates every usable completion with every template:
                ``rating.seeds`` sampled replies (one seed each, parsed) and one answer
                distribution read from one pass
  3. summarise — per (rater, template): cross-seed r (overall and by origin), ICC, KL from
                uniform, discrimination d and informative r, unparseable counts; answer-
                distribution scale use; task consistency per item (1 − cross-seed std ÷ half
                the scale range, :func:`steerlab.stats.task_consistency`)

Configs: ``prefs_seed_sensitivity.yaml`` (seed 004's six 1-5 / qualitative templates) and
``prefs_template_discrimination.yaml`` (its seven discrimination templates).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field

from steerlab.experiments.engine.records import Record, Summary
from steerlab.experiments.engine.registry import register_kind
from steerlab.experiments.engine.run import Run
from steerlab.experiments.studies.prefs.common import (
    PrefsStudyConfig,
    RatingConfig,
    completion_cells,
    load_study_tasks,
    rating_cells,
    ratings_frame,
    usable,
)
from steerlab.experiments.studies.prefs.records import PrefRow
from steerlab.experiments.studies.prefs.stages import COMPLETE, RATE, PrefsKind
from steerlab.experiments.studies.prefs.summary import ConditionEntry, condition_entry, fin

DEFINITIONS = """\
seed r            Pearson r between the sampled ratings of two seeds over the items both rated,
                  averaged over all seed pairs (± std over pairs); by origin: the same within an origin
ICC(A,1)          two-way intraclass correlation, absolute agreement, items as targets and seeds as raters
KL                KL(rating distribution ‖ uniform over the DECLARED values), nats; normalised = ÷ log K
d                 share of items with at least one rating different from the condition's modal rating
informative r     seed r over those items only (a rater that always says 4 is not called reliable)
E[rating]         expected rating from the answer-token distribution (one pass, no sampling), mean over items
entropy           of that distribution (nats); scale mass = P(the reply is an answer on the scale)
consistency       per item: 1 − (cross-seed std of its rating ÷ half the scale range), mean over raters
unparseable       sampled replies with no rating on the scale: empty, no_answer or off_scale"""


class PrefsStatedConfig(PrefsStudyConfig):
    """Seed sensitivity, template discrimination and task consistency of stated ratings."""

    kind: Literal["prefs_stated"] = Field("prefs_stated", description="experiment kind")
    name: str = Field("prefs_stated", description="run name")
    completer: str | None = Field(None, description="label of the model that completes the tasks (default: the first)")
    rating: RatingConfig = RatingConfig(templates=["anchored_1_5", "anchored_precise_1_5"])
    context: str | None = Field(None, description="measurement-time system prompt of every rating conversation")


class OriginR(Record):
    """Cross-seed r within one origin."""

    rater: str
    template: str
    origin: str
    r: float | None
    r_std: float | None
    n_items: int


class ConsistencyPoint(Record):
    """One item's consistency and mean rating (scaled to 0-1) over the rating conditions."""

    item: str
    origin: str
    consistency: float | None
    mean_normalized: float | None


class PrefsStatedSummary(Summary):
    n_tasks: int
    n_completions: int
    n_excluded: int = Field(description="completions left out (empty, or mentioning their system prompt)")
    conditions: list[ConditionEntry]
    by_origin: list[OriginR]
    consistency: list[ConsistencyPoint]


@register_kind
class PrefsStated(PrefsKind):
    """Seed sensitivity / template discrimination / task consistency (see the module docstring)."""

    name = "prefs_stated"
    Config = PrefsStatedConfig
    Summary = PrefsStatedSummary

    def report(self, cfg: PrefsStatedConfig, summary: PrefsStatedSummary, out_dir: Path) -> Path:
        from steerlab.experiments.studies.prefs.report import render_stated

        return render_stated(cfg, summary, out_dir, DEFINITIONS)

    def flow(self, cfg: PrefsStatedConfig, run: Run) -> PrefsStatedSummary:
        from steerlab.prefs.templates import load_templates

        templates = load_templates(cfg.templates_file)[0]
        tasks = load_study_tasks(cfg)
        by_id = {t.id: t for t in tasks}
        completer = run.spec(cfg.completer or cfg.models[0].name).name

        # 1. complete
        comps = run.cells(
            COMPLETE,
            completion_cells(run, cfg, tasks, model=completer, agent=completer),
            batch_size=cfg.batch_size,
            desc="complete tasks",
        )
        good = usable(comps, cfg)

        # 2. rate: every model, every template, seeds + one distribution pass
        cells = [
            c
            for m in cfg.models
            for name in cfg.rating.templates
            for c in rating_cells(
                run,
                _template(templates, name),
                good,
                by_id,
                model=m.name,
                agent=m.name,
                rating=cfg.rating,
                context="context" if cfg.context else None,
                context_text=cfg.context,
            )
        ]
        rows = run.cells(RATE, cells, batch_size=cfg.batch_size, desc=f"rate: {len(cells)} cells")

        # 3. summarise
        return summarise(cfg, rows, templates, len(tasks), len(comps), len(comps) - len(good))


def _template(templates: dict, name: str):
    from steerlab.errors import ConfigError

    if name not in templates:
        raise ConfigError(f"rating.templates: unknown template {name!r}; known: {', '.join(sorted(templates))}")
    return templates[name]


def summarise(
    cfg: PrefsStatedConfig, rows: Sequence[PrefRow], templates: dict, n_tasks: int, n_comps: int, n_excluded: int
) -> PrefsStatedSummary:
    """The summary from the rating rows alone."""
    from steerlab.prefs.rating_stats import seed_r_by_origin

    frame = ratings_frame(rows)
    origins = dict(zip(frame["item"], frame["origin"]))
    conditions, by_origin = [], []
    multi = len(cfg.models) > 1
    for m in cfg.models:
        for name in cfg.rating.templates:
            part = frame[(frame["rater"] == m.name) & (frame["template"] == name)]
            sampled, dist = part[part["mode"] == "sample"], part[part["mode"] == "dist"]
            t = templates[name]
            conditions.append(condition_entry(m.name, t, sampled, dist, f"{m.name}/{name}" if multi else name))
            if len(sampled) and sampled["seed"].nunique() > 1:
                for origin, (r, sd, n) in seed_r_by_origin(sampled, t.scale, origins).items():
                    by_origin.append(
                        OriginR(rater=m.name, template=name, origin=origin, r=fin(r), r_std=fin(sd), n_items=n)
                    )
    return PrefsStatedSummary(
        name=cfg.name,
        n_tasks=n_tasks,
        n_completions=n_comps,
        n_excluded=n_excluded,
        conditions=conditions,
        by_origin=by_origin,
        consistency=_consistency(frame, templates, origins),
    )


def _consistency(frame: pd.DataFrame, templates: dict, origins: dict[str, str]) -> list[ConsistencyPoint]:
    from steerlab.stats import task_consistency

    sampled = frame[frame["mode"] == "sample"].dropna(subset=["value"])  # unparseable replies carry no rating
    if sampled.empty or sampled["seed"].nunique() < 2:
        return []
    scales = {name: templates[name].scale for name in sampled["template"].unique()}
    table = task_consistency(sampled, scales)
    lo = sampled["template"].map(lambda n: scales[n].lo)
    span = sampled["template"].map(lambda n: scales[n].hi - scales[n].lo)
    unit = ((sampled["value"] - lo) / span).groupby(sampled["item"]).mean()
    return [
        ConsistencyPoint(
            item=str(i),
            origin=origins[i],
            consistency=fin(table.loc[i, "consistency"]),
            mean_normalized=fin(unit.get(i)),
        )
        for i in table.index
    ]
