"""The refusal-direction study's numbers from its rows: candidate scores, the reference filters and selection, baseline scores, the per-intervention table, examples."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from steerlab.experiments.studies.refusal_direction.summary import (
    CONDITION_ORDER,
    BaselineScores,
    CandidateScore,
    ConditionEntry,
    Example,
    FilterReason,
    PromptFilterRecord,
    Selection,
)
from steerlab.stats.estimates import mean, rate

if TYPE_CHECKING:
    from steerlab.data import Prompt
    from steerlab.experiments.studies.refusal_direction.data import DirectionData
    from steerlab.experiments.studies.refusal_direction.records import CapabilityRow, GenerationRow, ScoreRow


def candidate_filters(
    c: CandidateScore,
    n_layers: int,
    *,
    prune_layer_fraction: float,
    kl_threshold: float,
    induce_threshold: float,
    min_norm: float,
) -> list[FilterReason]:
    """The filters ``c`` fails (Arditi et al.'s rules; see DEFINITIONS).

    Example:
        >>> c = CandidateScore(name="x", position=-1, layer=15, norm=1.0, bypass=-2, induce=-1, kl=0.3, n=8)
        >>> candidate_filters(c, 18, prune_layer_fraction=0.2, kl_threshold=0.1, induce_threshold=0.0, min_norm=0)
        ['late_layer', 'kl', 'induce']
    """
    reasons: list[FilterReason] = []
    if prune_layer_fraction > 0 and c.layer >= int(n_layers * (1.0 - prune_layer_fraction)):
        reasons.append("late_layer")
    if c.kl > kl_threshold:
        reasons.append("kl")
    if c.induce < induce_threshold:
        reasons.append("induce")
    if c.norm <= min_norm:
        reasons.append("degenerate")
    return reasons


def select_candidate(
    scores: Sequence[CandidateScore],
    n_layers: int,
    *,
    prune_layer_fraction: float = 0.2,
    kl_threshold: float = 0.1,
    induce_threshold: float = 0.0,
    min_norm_fraction: float = 1e-6,
    dropped_nonfinite: Sequence[str] = (),
) -> tuple[list[CandidateScore], Selection]:
    """Filter the candidates and choose one: the lowest bypass among survivors.

    ``min_norm_fraction``: candidates whose norm is at most this fraction of the largest are
    degenerate (e.g. the embedding layer, where every prompt's post-instruction tokens are the
    same). If no candidate survives, the induce filter is relaxed; if still none survives, the KL
    threshold is raised to twice the smallest KL among the candidates left (so the choice stays
    among the least destructive ones). Late layers and degenerate vectors are never allowed. The
    relaxed filters and the KL threshold used are recorded.

    Returns the scores with ``filtered`` and ``chosen`` filled in, and the :class:`Selection`.
    """
    if not scores:
        raise ValueError(
            "select_candidate: no candidates"
            + (f" with finite scores ({len(dropped_nonfinite)} dropped as NaN/inf)" if dropped_nonfinite else "")
        )
    min_norm = min_norm_fraction * max(c.norm for c in scores)
    kw = dict(prune_layer_fraction=prune_layer_fraction, induce_threshold=induce_threshold, min_norm=min_norm)
    reasons = {c.name: candidate_filters(c, n_layers, kl_threshold=kl_threshold, **kw) for c in scores}  # type: ignore[arg-type]
    allowed = [c for c in scores if not {"late_layer", "degenerate"} & set(reasons[c.name])]
    if not allowed:
        raise ValueError("select_candidate: every candidate is in the pruned late layers or degenerate")
    kl_used, relaxed = kl_threshold, []
    eligible = [c for c in allowed if not reasons[c.name]]
    if not eligible:
        relaxed = ["induce"]
        eligible = [c for c in allowed if "kl" not in reasons[c.name]]
    if not eligible:
        relaxed = ["induce", "kl"]
        kl_used = 2 * min(c.kl for c in allowed)
        eligible = [c for c in allowed if c.kl <= kl_used]
    best = min(eligible, key=lambda c: (c.bypass, c.layer, -c.position))
    ok = {c.name for c in eligible}
    out = [
        c.model_copy(update={"filtered": reasons[c.name], "eligible": c.name in ok, "chosen": c.name == best.name})
        for c in scores
    ]
    rule = "lowest bypass among candidates passing every filter"
    if relaxed == ["induce"]:
        rule = "lowest bypass after relaxing the induce filter (no candidate passed it)"
    elif relaxed:
        rule = (
            f"lowest bypass after relaxing the induce filter and raising the KL threshold to {kl_used:.3g} "
            "(twice the smallest candidate KL; no candidate passed the KL filter)"
        )
    return out, Selection(
        chosen=best.name,
        position=best.position,
        layer=best.layer,
        rule=rule,
        relaxed=relaxed,
        n_eligible=len(eligible),
        prune_layer_fraction=prune_layer_fraction,  # type: ignore[arg-type]
        kl_threshold=kl_threshold,
        kl_threshold_used=kl_used,
        induce_threshold=induce_threshold,
        dropped_nonfinite=list(dropped_nonfinite),
    )


def candidate_scores(
    rows: Sequence[ScoreRow], norms: dict[str, tuple[int, int, float]], dropped: list[str] | None = None
) -> list[CandidateScore]:
    """Mean bypass / induce / KL per candidate from the score rows. ``norms[name] = (position, layer, norm)``.

    A candidate with a NaN or infinite mean score (e.g. an overflow under ablation in low precision)
    is left out, as the reference's ``select_direction`` discards it; its name is appended to
    ``dropped`` when a list is given."""
    acc: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        if r.candidate is not None and r.metric is not None:
            value = r.kl if r.metric == "kl" else r.refusal_score
            acc[(r.candidate, r.metric)].append(float("nan") if value is None or not r.finite else value)
    out = []
    for name, (position, layer, norm) in norms.items():
        parts = {m: acc.get((name, m), []) for m in ("bypass", "induce", "kl")}
        if not all(parts.values()):
            raise ValueError(f"candidate {name}: missing score rows")
        means = {m: float(np.mean(v)) for m, v in parts.items()}
        if not all(np.isfinite(list(means.values()))) or not np.isfinite(norm):
            if dropped is not None:
                dropped.append(name)
            continue
        out.append(
            CandidateScore(
                name=name,
                position=position,
                layer=layer,
                norm=norm,
                bypass=means["bypass"],
                induce=means["induce"],
                kl=means["kl"],
                n=min(len(v) for v in parts.values()),
            )
        )
    return out


def filter_prompts(
    data: DirectionData, scores: dict[tuple[str, str, str], float | None], *, enabled: bool = True
) -> tuple[DirectionData, PromptFilterRecord]:
    """The reference's ``filter_data``: keep the train/val harmful prompts whose unsteered refusal score
    is > 0 (the model refuses them) and the harmless ones whose score is < 0 (it does not).

    Args:
        data: the splits.
        scores: ``(split, prompt_set, prompt_id)`` → baseline refusal score, for every train/val prompt
            (None = not finite: the prompt is dropped).
        enabled: False = keep everything (the record still counts the prompts).

    Raises:
        InputError: a set would keep fewer than 2 train or 1 validation prompt.

    Example:
        >>> kept, rec = filter_prompts(data, {("train", "harmful", "a"): 1.2, ...})
        >>> rec.kept["train/harmful"]
    """
    from dataclasses import replace

    from steerlab.errors import InputError

    def keep(split: str, name: str, p: Prompt) -> bool:
        if not enabled:
            return True
        key = (split, name, p.id)
        if key not in scores:
            raise ValueError(f"filter_prompts: no baseline score for {key}")
        score = scores[key]
        if score is None:  # not finite: neither refused nor answered
            return False
        return score > 0 if name == "harmful" else score < 0

    before: dict[str, int] = {}
    kept: dict[str, int] = {}
    new: dict[str, dict[str, list[Prompt]]] = {}
    for split, sets in (("train", data.train), ("val", data.val)):
        new[split] = {}
        for name, prompts in sets.items():
            new[split][name] = [p for p in prompts if keep(split, name, p)]
            before[f"{split}/{name}"], kept[f"{split}/{name}"] = len(prompts), len(new[split][name])
            need = 2 if split == "train" else 1
            if len(new[split][name]) < need:
                what = "refuses" if name == "harmful" else "does not refuse"
                raise InputError(
                    f"prompt filter: the model {what} only {len(new[split][name])} of {len(prompts)} {split} "
                    f"{name} prompts; add prompts or set scoring.filter_prompts: false"
                )
    record = PromptFilterRecord(enabled=enabled, before=before, kept=kept)
    return replace(data, train=new["train"], val=new["val"]), record


def baseline_scores(rows: Sequence[ScoreRow], n_resamples: int, seed: int) -> BaselineScores:
    by_set: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r.metric == "baseline" and r.split == "val" and r.refusal_score is not None:
            by_set[r.prompt_set].append(float(r.refusal_score))
    return BaselineScores(
        harmful=mean(by_set["harmful"], n_resamples, seed), harmless=mean(by_set["harmless"], n_resamples, seed)
    )


def condition_table(
    gen_rows: Sequence[GenerationRow], cap_rows: Sequence[CapabilityRow], n_resamples: int, seed: int
) -> list[ConditionEntry]:
    """The per-intervention table from the generation and capability rows."""
    gen: dict[str | None, list[GenerationRow]] = defaultdict(list)
    cap: dict[str | None, list[CapabilityRow]] = defaultdict(list)
    for g in gen_rows:
        gen[g.condition].append(g)
    for c in cap_rows:
        cap[c.condition].append(c)
    out = []
    for cond in CONDITION_ORDER:
        if cond not in gen:
            continue
        harmful = [r for r in gen[cond] if r.prompt_set == "harmful"]
        harmless = [r for r in gen[cond] if r.prompt_set == "harmless"]
        look = [r for r in gen[cond] if r.prompt_set == "overrefusal"]
        cats = Counter(c for r in harmful if r.unsafe for c in r.guard_categories)
        llm = [r.verdict_llm == "refusal" for r in harmful if r.verdict_llm is not None]
        out.append(
            ConditionEntry(
                condition=cond,
                refusal=rate([bool(r.refused) for r in harmful]),
                refusal_markers=rate([r.verdict_markers == "refusal" for r in harmful]),
                refusal_llm=rate(llm) if llm else None,
                over_refusal=rate([bool(r.refused) for r in harmless]),
                over_refusal_lookalike=rate([bool(r.refused) for r in look]) if look else None,
                unsafe=rate([bool(r.unsafe) for r in harmful]),
                unsafe_categories=dict(sorted(cats.items())),
                guard_unparsed=sum(r.guard == "unparsed" for r in harmful),
                kl=mean([r.kl for r in cap.get(cond, []) if r.kl is not None], n_resamples, seed),
                ce=mean([r.ce for r in cap.get(cond, []) if r.ce is not None], n_resamples, seed),
                mean_words_harmful=float(np.mean([r.words for r in harmful])) if harmful else None,
            )
        )
    return out


def examples(rows: Sequence[GenerationRow], per_condition: int = 2) -> list[Example]:
    """A few replies to harmful test prompts per condition, the same prompts for every condition."""
    gen = [r for r in rows if r.prompt_set == "harmful"]
    ids = sorted({r.prompt_id for r in gen})[:per_condition]
    out = [
        Example(
            condition=r.condition,
            prompt_set=r.prompt_set,
            prompt=r.prompt,
            output=r.output or "",  # type: ignore[arg-type]
            refused=bool(r.refused),
            guard=r.guard,
        )
        for r in gen
        if r.prompt_id in ids
    ]
    return sorted(out, key=lambda e: (e.prompt, CONDITION_ORDER.index(e.condition)))
