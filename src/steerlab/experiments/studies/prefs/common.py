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

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from steerlab.evals.base import Verdict
from steerlab.experiments.engine.config import ExperimentConfig, Strict
from steerlab.experiments.engine.registry import ExperimentKind
from steerlab.experiments.engine.records import (
    NO_INTERVENTION,
    Cell,
    InterventionSpec,
    Row,
    make_key,
)
from steerlab.prefs.parsing import Reason
from steerlab.prefs.tasks import Task

if TYPE_CHECKING:
    from steerlab.experiments.engine.run import Run
    from steerlab.experiments.engine.worker import WorkerContext
    from steerlab.prefs.templates import PairwiseTemplate, RatingTemplate

Stage = Literal["complete", "rate", "choose", "open"]
Mode = Literal["sample", "dist"]

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
    exclude_mentions: bool = Field(True, description="leave completions that mention their system prompt out "
                                   "of ratings (they are counted in the report)")


class RatingConfig(Strict):
    """How stated ratings are measured."""

    templates: list[str] = Field(["anchored_precise_1_5"], min_length=1, description="rating template names")
    seeds: int = Field(3, ge=0, description="sampled replies per (task, template), one seed each (0 = none)")
    temperature: float = Field(1.0, ge=0, description="sampling temperature of the rating replies")
    max_new_tokens: int = Field(8, ge=1, description="most tokens per sampled rating reply")
    distribution: bool = Field(True, description="also read the answer-token distribution from one pass "
                               "(local models and APIs with log-probs)")


class PrefsStudyConfig(ExperimentConfig):
    """Fields every prefs kind has."""

    tasks: TasksConfig = TasksConfig()
    completion: CompletionConfig = CompletionConfig()
    templates_file: str | None = Field(None, description="extra rating/pairwise templates (YAML, see "
                                       "steerlab/prefs/templates.yaml)")
    batch_size: int = Field(16, ge=1, description="rows per batched pass")
    bootstrap_resamples: int = Field(1000, ge=100, description="resamples for bootstrap intervals")


# ---------------------------------------------------------------------------- cells and rows


class PrefCell(Cell):
    """One model call of a preference study (see the module docstring)."""

    stage: Stage = Field(description="complete, rate, choose or open")
    agent: str = Field(description="who acts: a model label, or a variant of one (prompted or steered)")
    mode: Mode = Field("sample", description="sample a reply, or read the answer distribution (dist)")
    item: str = Field(description="task id (choose: the task shown first)")
    origin: str = Field(description="origin of the task (choose: of the task shown first)")
    item_b: str | None = Field(None, description="choose: the task shown second")
    origin_b: str | None = Field(None, description="choose: origin of the task shown second")
    template: str | None = Field(None, description="rating or pairwise template name")
    messages: list[dict[str, str]] = Field(description="the conversation sent")
    max_new_tokens: int = Field(0, ge=0, description="most tokens of a sampled reply")
    temperature: float = Field(0.0, ge=0, description="sampling temperature (0 = greedy)")
    persona: str | None = Field(None, description="completion-time persona of the completion written or rated")
    context: str | None = Field(None, description="measurement-time system prompt name")
    completer: str | None = Field(None, description="agent whose completion is rated or compared")
    strength: float = Field(0.0, description="steering strength of this cell (a label; the intervention acts)")
    sample: int = Field(0, ge=0, description="index of the sampled reply (one seed each)")


class PrefRow(PrefCell, Row):
    """A finished cell: the reply or the distribution, and what was read from it."""

    text: str | None = Field(None, description="the sampled reply")
    finish_reason: Literal["stop", "length"] | None = None
    rating: float | None = Field(None, description="rate/sample: the parsed rating (None = unparseable)")
    choice: Literal["A", "B"] | None = Field(None, description="choose/sample: the parsed letter")
    parse: Reason | None = Field(None, description="why a sampled reply could (not) be read")
    probs: list[float] | None = Field(None, description="dist: P over the template's values, or [P(A), P(B)] normalised")
    scale_mass: float | None = Field(None, description="dist: unnormalised P of an answer on the scale (or a letter)")
    expected: float | None = Field(None, description="rate/dist: expected rating")
    entropy: float | None = Field(None, description="rate/dist: entropy of the answer distribution (nats)")
    refusal: Verdict | None = Field(None, description="complete: refusal-marker verdict of the reply")
    mentions_system: bool | None = Field(None, description="complete: the reply mentions its system prompt")
    mention_terms: list[str] | None = Field(None, description="complete: the system prompt's key terms found")
    coherence: float | None = Field(None, description="open: coherence of the reply under the unsteered model")


def cell_length(cell: PrefCell) -> int:
    """Characters of the conversation (the engine batches similar lengths together)."""
    return sum(len(m["content"]) for m in cell.messages)


# ---------------------------------------------------------------------------- driver-side builders


def system_turn(text: str | None) -> list[dict[str, str]]:
    return [{"role": "system", "content": text}] if text else []


def completion_cells(run: Run, cfg: PrefsStudyConfig, tasks: Sequence[Task], *, model: str, agent: str,
                     persona: str | None = None, system: str | None = None,
                     intervention: InterventionSpec = NO_INTERVENTION) -> list[PrefCell]:
    """One ``complete`` cell per task for ``agent`` under an (already composed) system prompt."""
    c = cfg.completion
    out = []
    for t in tasks:
        key = make_key("complete", agent, persona or "-", t.id)
        out.append(PrefCell(key=key, model=model, seed=run.seed(key), intervention=intervention, stage="complete",
                            agent=agent, item=t.id, origin=t.origin,
                            messages=system_turn(system) + [{"role": "user", "content": t.prompt}],
                            max_new_tokens=c.max_new_tokens, temperature=c.temperature, persona=persona))
    return out


def usable(rows: Sequence[PrefRow], cfg: PrefsStudyConfig) -> list[PrefRow]:
    """Completions that may be rated: non-empty, and (if configured) not mentioning their system prompt."""
    return [r for r in rows if (r.text or "").strip() and not (cfg.completion.exclude_mentions and r.mentions_system)]


def rating_cells(run: Run, template: RatingTemplate, completions: Sequence[PrefRow], tasks: dict[str, Task], *,
                 model: str, agent: str, rating: RatingConfig, context: str | None = None,
                 context_text: str | None = None, intervention: InterventionSpec = NO_INTERVENTION,
                 strength: float = 0.0, tag: str = "") -> list[PrefCell]:
    """``rate`` cells for every completion: ``rating.seeds`` sampled replies and (optionally) one
    distribution cell, under a measurement-time system prompt ``context_text``."""
    out = []
    modes: list[tuple[Mode, int]] = [("sample", s) for s in range(rating.seeds)]
    if rating.distribution:
        modes.append(("dist", 0))
    for comp in completions:
        msgs = template.conversation(tasks[comp.item].prompt, comp.text or "", context_text)
        for mode, s in modes:
            key = make_key("rate", tag, agent, template.name, context or "-", comp.agent, comp.persona or "-",
                           comp.item, strength, mode, s)
            out.append(PrefCell(
                key=key, model=model, seed=run.seed(key), intervention=intervention, stage="rate", agent=agent,
                mode=mode, item=comp.item, origin=comp.origin, template=template.name, messages=msgs,
                max_new_tokens=rating.max_new_tokens if mode == "sample" else 0,
                temperature=rating.temperature if mode == "sample" else 0.0, persona=comp.persona, context=context,
                completer=comp.agent, strength=strength, sample=s))
    return out


def choice_cell(run: Run, template: PairwiseTemplate, first: Task, second: Task, comps: dict[str, PrefRow], *,
                model: str, agent: str, mode: Mode, sample: int = 0, reasoning: bool = False,
                max_new_tokens: int = 8, temperature: float = 1.0) -> PrefCell:
    """One ``choose`` cell: ``first`` shown as Task A, ``second`` as Task B."""
    msgs = template.conversation(first.prompt, second.prompt, comps[first.id].text or "" if first.id in comps else "",
                                 comps[second.id].text or "" if second.id in comps else "", reasoning=reasoning)
    key = make_key("choose", agent, template.name, first.id, second.id, mode, sample)
    return PrefCell(key=key, model=model, seed=run.seed(key), stage="choose", agent=agent, mode=mode, item=first.id,
                    origin=first.origin, item_b=second.id, origin_b=second.origin, template=template.name,
                    messages=msgs, max_new_tokens=max_new_tokens if mode == "sample" else 0,
                    temperature=temperature if mode == "sample" else 0.0, sample=sample)


# ---------------------------------------------------------------------------- the worker


def _templates(cfg: PrefsStudyConfig, ctx: WorkerContext) -> tuple[dict, dict]:
    from steerlab.prefs.templates import load_templates

    return ctx.cached(f"prefs-templates:{cfg.templates_file}", lambda: load_templates(cfg.templates_file))


def _r(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def _group_key(c: PrefCell) -> tuple:
    return (c.stage, c.mode, c.template, c.max_new_tokens, c.temperature)


def run_pref_batch(cfg: PrefsStudyConfig, lm: Any, cells: Sequence[PrefCell], ctx: WorkerContext) -> list[PrefRow]:
    """One row per cell, in order (the worker side of every prefs kind).

    ``lm`` is a :class:`~steerlab.models.hf.LanguageModel` or any backend meeting the
    :class:`~steerlab.models.backend.ChatBackend` (sampled cells) and
    :class:`~steerlab.models.backend.OptionScorer` (``dist`` cells) contracts; interventions
    and ``open`` cells need the local model.
    """
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, c in enumerate(cells):
        groups[_group_key(c)].append(i)
    rows: list[PrefRow | None] = [None] * len(cells)
    for idx in groups.values():
        group = [cells[i] for i in idx]
        for i, row in zip(idx, _run_group(cfg, lm, group, ctx)):
            rows[i] = row
    return rows  # type: ignore[return-value]


def _interventions(lm: Any, group: Sequence[PrefCell], ctx: WorkerContext) -> dict[str, Any]:
    """Keyword arguments for the local model: per-row interventions and one batch for the group."""
    from steerlab.models.hf import LanguageModel

    if not isinstance(lm, LanguageModel):
        if any(not c.intervention.is_noop for c in group):
            raise RuntimeError(f"{getattr(lm, 'name', lm)}: steering needs a local model")
        return {}
    from steerlab.interventions.spec import batch_interventions

    return {"interventions": batch_interventions([c.intervention for c in group], ctx.vectors),
            "batch_size": len(group)}


def _run_group(cfg: PrefsStudyConfig, lm: Any, group: Sequence[PrefCell], ctx: WorkerContext) -> list[PrefRow]:
    from steerlab.prefs.answers import choice_probabilities, rating_distributions

    kw = _interventions(lm, group, ctx)
    convs = [c.messages for c in group]
    first = group[0]
    base = [c.model_dump() for c in group]
    if first.mode == "dist":
        if first.stage == "rate":
            template = _templates(cfg, ctx)[0][first.template]
            dists = rating_distributions(lm, convs, template, **kw)
            return [PrefRow(**b, probs=[_r(p) for p in d.probs] if d else None, scale_mass=_r(d.scale_mass) if d else None,
                            expected=_r(d.expected) if d else None, entropy=_r(d.entropy) if d else None)
                    for b, d in zip(base, dists)]
        probs = choice_probabilities(lm, convs, **kw)
        return [PrefRow(**b, probs=None if np.isnan(p.p_first) else [_r(p.p_first), _r(1 - p.p_first)],
                        scale_mass=_r(p.mass)) for b, p in zip(base, probs)]
    replies = lm.complete(convs, max_new_tokens=first.max_new_tokens, temperature=first.temperature,
                          seed=[c.seed for c in group], **kw)
    return [PrefRow(**b, **_read(cfg, first, c, r, ctx), text=r.text, finish_reason=r.finish_reason)
            for b, c, r in zip(base, group, replies)] if first.stage != "open" else _open_rows(lm, base, group, replies)


def _read(cfg: PrefsStudyConfig, first: PrefCell, c: PrefCell, reply: Any, ctx: WorkerContext) -> dict[str, Any]:
    """What a sampled reply says, by stage."""
    from steerlab.evals.refusal_markers import marker_verdict
    from steerlab.prefs.completions import system_prompt_mention
    from steerlab.prefs.parsing import parse_choice, parse_rating

    if c.stage == "complete":
        system = c.messages[0]["content"] if c.messages[0]["role"] == "system" else None
        m = system_prompt_mention(reply.text, system, c.messages[-1]["content"])
        return {"refusal": marker_verdict(reply.text), "mentions_system": m.flagged, "mention_terms": list(m.terms)}
    if c.stage == "rate":
        p = parse_rating(reply.text, _templates(cfg, ctx)[0][c.template])
        return {"rating": p.value, "parse": p.reason}
    p = parse_choice(reply.text)
    return {"choice": p.value, "parse": p.reason}


def _open_rows(lm: Any, base: list[dict], group: Sequence[PrefCell], replies: Sequence[Any]) -> list[PrefRow]:
    from steerlab.evals.coherence import CoherenceScorer

    scores = CoherenceScorer(lm, batch_size=len(group)).score([c.messages for c in group], [r.text for r in replies])
    return [PrefRow(**b, text=r.text, finish_reason=r.finish_reason, coherence=_r(s))
            for b, r, s in zip(base, replies, scores)]


# ---------------------------------------------------------------------------- reading rows back


def ratings_frame(rows: Sequence[PrefRow]) -> pd.DataFrame:
    """Long frame of ``rate`` rows: the columns of :data:`steerlab.prefs.RATING_COLUMNS` (rater =
    agent, seed = sample index, value = parsed rating or NaN) plus origin, mode, expected,
    entropy, scale mass, probs, persona, context, completer, strength, parse reason and text."""
    data = [{
        "item": r.item, "rater": r.agent, "template": r.template, "seed": r.sample, "sample": 0,
        "value": np.nan if r.rating is None else r.rating, "origin": r.origin, "mode": r.mode,
        "expected": np.nan if r.expected is None else r.expected, "entropy": np.nan if r.entropy is None else r.entropy,
        "scale_mass": np.nan if r.scale_mass is None else r.scale_mass, "probs": r.probs,
        "persona": r.persona or "none",
        "context": r.context or "none", "completer": r.completer, "strength": r.strength, "parse": r.parse,
        "text": r.text,
    } for r in rows if r.stage == "rate"]
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


class ConceptConfig(Strict):
    """A concept vector from two contrasting system prompts (seed 004's concept vectors):
    the mean activation over tasks under the positive prompt minus under the negative one."""

    positive: str = Field("You love math.", description="system prompt of the positive side")
    negative: str = Field("You hate math.", description="system prompt of the negative side")
    layer: int | None = Field(None, description="layer of the vector (default: 40% of the depth)")
    selector: Literal["last", "first", "mean"] = Field("last", description="token the activation is read at "
                                                       "(seed 004: 'last' steered, 'first' broke coherence)")


def concept_layer(concept: ConceptConfig, n_layers: int) -> int:
    """The configured layer, or 40% of the depth."""
    from steerlab.errors import ConfigError

    if concept.layer is None:
        return round(0.4 * (n_layers - 1))
    if not -n_layers <= concept.layer < n_layers:
        raise ConfigError(f"concept.layer: layer {concept.layer} is out of range for a model with {n_layers} layers")
    return concept.layer % n_layers


def extract_concept_vector(lm: Any, prompts: list[str], concept: ConceptConfig, layer: int) -> Any:
    """The concept vector at ``layer``, normalised to the mean activation norm there (a worker
    task): strength 0.1 then adds 10% of a typical activation (seed 004's fix)."""
    from steerlab.vectors import Example, extract

    pos = [Example(p, system=concept.positive) for p in prompts]
    neg = [Example(p, system=concept.negative) for p in prompts]
    return extract(lm, pos, neg, [layer], selector=concept.selector, normalization="activation_norm")


def concept_vector(run: Run, spec: Any, tasks: Sequence[Task], concept: ConceptConfig) -> Any:
    """The concept vector of ``spec``'s model, made once and saved under ``vectors/`` (reused on resume)."""
    from steerlab._io import slug

    layer = concept_layer(concept, run.model_info(spec).n_layers)
    vecs = run.vectors(f"concept_{slug(spec.name)}_{concept.selector}_L{layer}", spec, extract_concept_vector,
                       [t.prompt for t in tasks], concept, layer)
    return vecs[layer]


# ---------------------------------------------------------------------------- the kinds' shared base


class PrefsKind(ExperimentKind[Any, PrefCell, PrefRow, Any]):
    """Base of the prefs kinds: the shared row type and worker, length bucketing, and a report
    rendered by ``steerlab.experiments.studies.prefs.report.<renderer>`` with the kind's DEFINITIONS."""

    Row = PrefRow
    renderer: ClassVar[str]
    definitions: ClassVar[str]

    def run_batch(self, cfg: Any, lm: Any, cells: Sequence[PrefCell], ctx: WorkerContext) -> list[PrefRow]:
        return run_pref_batch(cfg, lm, cells, ctx)

    def cell_length(self, cfg: Any, cell: PrefCell) -> int:
        return cell_length(cell)

    def report(self, cfg: Any, summary: Any, out_dir: Path) -> Path:
        import importlib

        render = getattr(importlib.import_module("steerlab.experiments.studies.prefs.report"), self.renderer)
        return render(cfg, summary, out_dir, self.definitions)
