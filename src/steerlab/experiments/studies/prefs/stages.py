"""The worker side of every preference study: one row per cell, for each of the four stages."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from steerlab.experiments.engine.registry import ExperimentKind, Stage

if TYPE_CHECKING:
    from steerlab.experiments.engine.worker import WorkerContext

from steerlab.experiments.studies.prefs.common import PrefsStudyConfig, cell_length
from steerlab.experiments.studies.prefs.records import ChoiceRow, CompletionRow, OpenRow, PrefCell, PrefRow, RatingRow


def _templates(cfg: PrefsStudyConfig, ctx: WorkerContext) -> tuple[dict, dict]:
    from steerlab.prefs.templates import load_templates

    return ctx.cached(f"prefs-templates:{cfg.templates_file}", lambda: load_templates(cfg.templates_file))


def _r(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def _group_key(c: PrefCell) -> tuple:
    return (c.stage, c.mode, c.template, c.max_new_tokens, c.temperature)


def run_pref_batch(cfg: PrefsStudyConfig, lm: Any, cells: Sequence[PrefCell], ctx: WorkerContext) -> list[Any]:
    """One row per cell, in order (the worker side of every prefs stage; a batch holds one stage).

    The rows are of the batch's stage (``CompletionRow`` for complete cells, ...), hence ``list[Any]``:
    one function serves the four stages below.

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
    return [r for r in rows if r is not None]


def _interventions(lm: Any, group: Sequence[PrefCell], ctx: WorkerContext) -> dict[str, Any]:
    """Keyword arguments for the local model: per-row interventions and one batch for the group."""
    from steerlab.models.hf import LanguageModel

    if not isinstance(lm, LanguageModel):
        if any(not c.intervention.is_noop for c in group):
            raise RuntimeError(f"{getattr(lm, 'name', lm)}: steering needs a local model")
        return {}
    from steerlab.interventions.spec import batch_interventions

    return {
        "interventions": batch_interventions([c.intervention for c in group], ctx.vectors),
        "batch_size": len(group),
    }


def _run_group(cfg: PrefsStudyConfig, lm: Any, group: Sequence[PrefCell], ctx: WorkerContext) -> list[PrefRow]:
    from steerlab.prefs.answers import choice_probabilities, rating_distributions

    kw = _interventions(lm, group, ctx)
    convs = [c.messages for c in group]
    first = group[0]
    base = [c.model_dump(exclude={"version"}) for c in group]
    if first.mode == "dist":
        if first.stage == "rate":
            template = _templates(cfg, ctx)[0][first.template]
            dists = rating_distributions(lm, convs, template, **kw)
            return [
                RatingRow(
                    **b,
                    probs=[_r(p) for p in d.probs] if d else None,
                    scale_mass=_r(d.scale_mass) if d else None,
                    expected=_r(d.expected) if d else None,
                    entropy=_r(d.entropy) if d else None,
                )
                for b, d in zip(base, dists)
            ]
        probs = choice_probabilities(lm, convs, **kw)
        return [
            ChoiceRow(
                **b, probs=None if np.isnan(p.p_first) else [_r(p.p_first), _r(1 - p.p_first)], scale_mass=_r(p.mass)
            )
            for b, p in zip(base, probs)
        ]
    replies = lm.complete(
        convs, max_new_tokens=first.max_new_tokens, temperature=first.temperature, seed=[c.seed for c in group], **kw
    )
    return (
        [
            _SAMPLED_ROW[first.stage](**b, **_read(cfg, first, c, r, ctx), text=r.text, finish_reason=r.finish_reason)
            for b, c, r in zip(base, group, replies)
        ]
        if first.stage != "open"
        else _open_rows(lm, base, group, replies)
    )


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
    return [
        OpenRow(**b, text=r.text, finish_reason=r.finish_reason, coherence=_r(s))
        for b, r, s in zip(base, replies, scores)
    ]


_SAMPLED_ROW: dict[str, type[CompletionRow] | type[RatingRow] | type[ChoiceRow]] = {
    "complete": CompletionRow,
    "rate": RatingRow,
    "choose": ChoiceRow,
}


def _length(cfg: PrefsStudyConfig, cell: PrefCell) -> int:
    return cell_length(cell)


#: a model answers a task; rates a completion; chooses between two; replies open-endedly
COMPLETE: Stage[PrefsStudyConfig, PrefCell, CompletionRow] = Stage("complete", CompletionRow, run_pref_batch, _length)
RATE: Stage[PrefsStudyConfig, PrefCell, RatingRow] = Stage("rate", RatingRow, run_pref_batch, _length)
CHOOSE: Stage[PrefsStudyConfig, PrefCell, ChoiceRow] = Stage("choose", ChoiceRow, run_pref_batch, _length)
OPEN: Stage[PrefsStudyConfig, PrefCell, OpenRow] = Stage("open", OpenRow, run_pref_batch, _length)
STAGES = (COMPLETE, RATE, CHOOSE, OPEN)


class PrefsKind(ExperimentKind[Any, Any]):
    """Base of the prefs kinds: the four shared stages (``stages.py``); each kind writes its flow and report."""

    stages = STAGES
