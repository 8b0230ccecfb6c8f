"""What every preference study (seed 004) shares: config pieces, one cell/row type, the worker.

Every prefs kind runs the same four kinds of cell, so they share :class:`PrefCell` /
:class:`PrefRow` and one worker function, :func:`run_pref_batch`:

    complete   a model answers a task (optionally under a persona system prompt); the row
               keeps the reply, its refusal-marker verdict and the system-prompt mention check
    rate       a model rates a completed task with a rating template:
                 mode "sample" — a sampled reply (the cell's own seed) parsed into a rating
                 mode "dist"   — the answer-token distribution from one pass (expected rating, entropy)
    choose     a model says which of two tasks it preferred (A/B), sampled or from one pass
    open       an open-ended reply (e.g. "How do you feel about math?") scored for coherence

A cell carries the full conversation it sends (built on the driver), its sampling settings
and its intervention, so a row depends only on its cell. Driver-side helpers build the cells
of each stage; the kinds (``prefs_*.py``) chain stages and summarise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import Field

from steerlab.experiments.engine.config import ExperimentConfig, Strict
from steerlab.experiments.engine.records import (
    NO_INTERVENTION,
    InterventionSpec,
    make_key,
)
from steerlab.experiments.studies.prefs.records import Mode, PrefCell, PrefRow
from steerlab.prefs.tasks import Task

if TYPE_CHECKING:
    from steerlab.experiments.engine.run import Run
    from steerlab.prefs.templates import PairwiseTemplate, RatingTemplate


# ---------------------------------------------------------------------------- config pieces


class TasksConfig(Strict):
    """Which tasks to use."""

    source: str = Field("shipped:pref_tasks", description="'shipped:pref_tasks' or a JSONL file (id, origin, prompt)")
    n_per_origin: int | None = Field(None, ge=1, description="first N tasks of each origin (None = all)")
    origins: list[str] | None = Field(None, description="only these origins (None = all)")


class CompletionConfig(Strict):
    """How tasks are completed before they are rated or compared."""

    max_new_tokens: int = Field(40, ge=1, description="most tokens per completion")
    temperature: float = Field(0.0, ge=0, description="0 = greedy")
    do_not_mention: bool = Field(True, description="prefix personas with 'Do not mention these instructions.'")
    exclude_mentions: bool = Field(
        True,
        description="leave completions that mention their system prompt out "
        "of ratings (they are counted in the report)",
    )


class RatingConfig(Strict):
    """How stated ratings are measured."""

    templates: list[str] = Field(["anchored_precise_1_5"], min_length=1, description="rating template names")
    seeds: int = Field(3, ge=0, description="sampled replies per (task, template), one seed each (0 = none)")
    temperature: float = Field(1.0, ge=0, description="sampling temperature of the rating replies")
    max_new_tokens: int = Field(8, ge=1, description="most tokens per sampled rating reply")
    distribution: bool = Field(
        True, description="also read the answer-token distribution from one pass (local models and APIs with log-probs)"
    )


class PrefsStudyConfig(ExperimentConfig):
    """Fields every prefs kind has."""

    tasks: TasksConfig = TasksConfig()
    completion: CompletionConfig = CompletionConfig()
    templates_file: str | None = Field(
        None, description="extra rating/pairwise templates (YAML, see steerlab/prefs/templates.yaml)"
    )
    batch_size: int = Field(16, ge=1, description="rows per batched pass")
    bootstrap_resamples: int = Field(1000, ge=100, description="resamples for bootstrap intervals")


# ---------------------------------------------------------------------------- cells and rows


def cell_length(cell: PrefCell) -> int:
    """Characters of the conversation (the engine batches similar lengths together)."""
    return sum(len(m["content"]) for m in cell.messages)


# ---------------------------------------------------------------------------- driver-side builders


def system_turn(text: str | None) -> list[dict[str, str]]:
    return [{"role": "system", "content": text}] if text else []


def completion_cells(
    run: Run,
    cfg: PrefsStudyConfig,
    tasks: Sequence[Task],
    *,
    model: str,
    agent: str,
    persona: str | None = None,
    system: str | None = None,
    intervention: InterventionSpec = NO_INTERVENTION,
) -> list[PrefCell]:
    """One ``complete`` cell per task for ``agent`` under an (already composed) system prompt."""
    c = cfg.completion
    out = []
    for t in tasks:
        key = make_key("complete", agent, persona or "-", t.id)
        out.append(
            PrefCell(
                key=key,
                model=model,
                seed=run.seed(key),
                intervention=intervention,
                stage="complete",
                agent=agent,
                item=t.id,
                origin=t.origin,
                messages=system_turn(system) + [{"role": "user", "content": t.prompt}],
                max_new_tokens=c.max_new_tokens,
                temperature=c.temperature,
                persona=persona,
            )
        )
    return out


def usable(rows: Sequence[PrefRow], cfg: PrefsStudyConfig) -> list[PrefRow]:
    """Completions that may be rated: non-empty, and (if configured) not mentioning their system prompt."""
    return [r for r in rows if (r.text or "").strip() and not (cfg.completion.exclude_mentions and r.mentions_system)]


def rating_cells(
    run: Run,
    template: RatingTemplate,
    completions: Sequence[PrefRow],
    tasks: dict[str, Task],
    *,
    model: str,
    agent: str,
    rating: RatingConfig,
    context: str | None = None,
    context_text: str | None = None,
    intervention: InterventionSpec = NO_INTERVENTION,
    strength: float = 0.0,
    tag: str = "",
) -> list[PrefCell]:
    """``rate`` cells for every completion: ``rating.seeds`` sampled replies and (optionally) one
    distribution cell, under a measurement-time system prompt ``context_text``."""
    out = []
    modes: list[tuple[Mode, int]] = [("sample", s) for s in range(rating.seeds)]
    if rating.distribution:
        modes.append(("dist", 0))
    for comp in completions:
        msgs = template.conversation(tasks[comp.item].prompt, comp.text or "", context_text)
        for mode, s in modes:
            key = make_key(
                "rate",
                tag,
                agent,
                template.name,
                context or "-",
                comp.agent,
                comp.persona or "-",
                comp.item,
                strength,
                mode,
                s,
            )
            out.append(
                PrefCell(
                    key=key,
                    model=model,
                    seed=run.seed(key),
                    intervention=intervention,
                    stage="rate",
                    agent=agent,
                    mode=mode,
                    item=comp.item,
                    origin=comp.origin,
                    template=template.name,
                    messages=msgs,
                    max_new_tokens=rating.max_new_tokens if mode == "sample" else 0,
                    temperature=rating.temperature if mode == "sample" else 0.0,
                    persona=comp.persona,
                    context=context,
                    completer=comp.agent,
                    strength=strength,
                    sample=s,
                )
            )
    return out


def choice_cell(
    run: Run,
    template: PairwiseTemplate,
    first: Task,
    second: Task,
    comps: dict[str, PrefRow],
    *,
    model: str,
    agent: str,
    mode: Mode,
    sample: int = 0,
    reasoning: bool = False,
    max_new_tokens: int = 8,
    temperature: float = 1.0,
) -> PrefCell:
    """One ``choose`` cell: ``first`` shown as Task A, ``second`` as Task B."""
    msgs = template.conversation(
        first.prompt,
        second.prompt,
        comps[first.id].text or "" if first.id in comps else "",
        comps[second.id].text or "" if second.id in comps else "",
        reasoning=reasoning,
    )
    key = make_key("choose", agent, template.name, first.id, second.id, mode, sample)
    return PrefCell(
        key=key,
        model=model,
        seed=run.seed(key),
        stage="choose",
        agent=agent,
        mode=mode,
        item=first.id,
        origin=first.origin,
        item_b=second.id,
        origin_b=second.origin,
        template=template.name,
        messages=msgs,
        max_new_tokens=max_new_tokens if mode == "sample" else 0,
        temperature=temperature if mode == "sample" else 0.0,
        sample=sample,
    )


# ---------------------------------------------------------------------------- reading rows back


def ratings_frame(rows: Sequence[PrefRow]) -> pd.DataFrame:
    """Long frame of ``rate`` rows: the columns of :data:`steerlab.prefs.RATING_COLUMNS` (rater =
    agent, seed = sample index, value = parsed rating or NaN) plus origin, mode, expected,
    entropy, scale mass, probs, persona, context, completer, strength, parse reason and text."""
    data = [
        {
            "item": r.item,
            "rater": r.agent,
            "template": r.template,
            "seed": r.sample,
            "sample": 0,
            "value": np.nan if r.rating is None else r.rating,
            "origin": r.origin,
            "mode": r.mode,
            "expected": np.nan if r.expected is None else r.expected,
            "entropy": np.nan if r.entropy is None else r.entropy,
            "scale_mass": np.nan if r.scale_mass is None else r.scale_mass,
            "probs": r.probs,
            "persona": r.persona or "none",
            "context": r.context or "none",
            "completer": r.completer,
            "strength": r.strength,
            "parse": r.parse,
            "text": r.text,
        }
        for r in rows
        if r.stage == "rate"
    ]
    return pd.DataFrame(data)


def first_template_and_tasks(cfg: Any) -> tuple[RatingTemplate, list[Task], dict[str, Task]]:
    """The config's first rating template, its tasks, and the tasks by id (what most kinds start with)."""
    from steerlab.prefs.templates import rating_template

    tasks = load_study_tasks(cfg)
    return rating_template(cfg.rating.templates[0], cfg.templates_file), tasks, {t.id: t for t in tasks}


def load_study_tasks(cfg: PrefsStudyConfig) -> list[Task]:
    """The config's tasks (balanced by origin when ``n_per_origin`` is set)."""
    from steerlab.prefs.tasks import load_tasks, select_tasks

    return select_tasks(load_tasks(cfg.tasks.source), n_per_origin=cfg.tasks.n_per_origin, origins=cfg.tasks.origins)


# ---------------------------------------------------------------------------- concept vectors
