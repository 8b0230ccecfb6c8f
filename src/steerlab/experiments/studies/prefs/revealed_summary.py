"""The summary of the revealed-preference study: counts per ordered pair, utilities, position bias, stated vs revealed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field

from steerlab.experiments.engine.records import Record, Summary
from steerlab.experiments.studies.prefs.common import (
    ratings_frame,
)
from steerlab.experiments.studies.prefs.records import PrefRow
from steerlab.experiments.studies.prefs.revealed_config import PairwiseConfig, PrefsRevealedConfig
from steerlab.experiments.studies.prefs.summary import (
    Estimate,
    RefusalGroup,
    fin,
    mean,
    per_completion,
    refusal_group,
)


class UtilityRow(Record):
    item: str
    origin: str
    mu: float
    sigma: float
    refused: bool
    stated: float | None


class RoundRow(Record):
    round: int
    pairs: int
    comparisons: int
    spearman_prev: float | None
    held_out_accuracy: float | None
    held_out_nll: float | None


class OriginMu(Record):
    origin: str
    n: int
    mu: Estimate


class PositionRow(Record):
    group: str
    n: int
    win_rate: float | None
    win_rate_first: float | None
    win_rate_second: float | None
    expected_from_position: float | None
    content_effect: float | None


class StatedRevealed(Record):
    origin: str
    n: int
    pearson: float | None
    pearson_low: float | None = Field(None, description="Fisher-z 95% interval of the Pearson r")
    pearson_high: float | None = None
    spearman: float | None
    spearman_low: float | None = Field(None, description="Fisher-z 95% interval (se √(1.06/(n−3)))")
    spearman_high: float | None = None
    n_pairs: int = Field(0, description="tasks with both a μ and a stated rating (the r's n)")
    per_seed_mean: float | None = Field(description="mean over seeds of Pearson r(μ, that seed's sampled rating)")
    per_seed_sd: float | None
    seeds: int


class PrefsRevealedSummary(Summary):
    template: str
    mode: str
    n_tasks: int
    n_pairs: int
    n_choice_cells: int
    unparseable: int
    stop_reason: str
    utilities: list[UtilityRow]
    by_origin: list[OriginMu]
    history: list[RoundRow]
    first_position: Estimate = Field(
        description="sample mode: rate over comparisons (Wilson); dist mode: mean P(first) over pairs "
        "asked both ways (each pair's two orders averaged; bootstrap over pairs), n = pairs"
    )
    first_position_p: float | None = Field(
        description="sample: binomial test vs 0.5; dist: one-sample t-test of the pair means vs 0.5"
    )
    first_position_unit: str = Field("comparisons", description="what first_position.n counts")
    mean_p_first: float | None = Field(description="dist mode: mean P(first) over all cells")
    letter_mass: float | None = Field(description="dist mode: mean P(A) + P(B)")
    order_consistency: float | None
    order_pairs: int
    position: list[PositionRow]
    refusal: list[RefusalGroup]
    stated_revealed: list[StatedRevealed]


def cell_counts(row: PrefRow, pairwise: PairwiseConfig) -> tuple[float, float, float]:
    """(first-shown wins, second-shown wins, unparseable) that one choice row stands for.

    A sampled reply is one whole comparison; a one-pass choice is one *fractional* comparison,
    ``P(first)`` wins for the first-shown task and ``1 − P(first)`` for the other (nothing rounded).
    """
    if row.mode == "dist":
        if row.probs is None:
            return 0.0, 0.0, 1.0
        return float(row.probs[0]), 1.0 - float(row.probs[0]), 0.0
    return float(row.choice == "A"), float(row.choice == "B"), float(row.choice is None)


def oriented_counts(
    rows: Sequence[PrefRow], pairs: Sequence[tuple[str, str]], pairwise: PairwiseConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per requested (first, second) pair, the wins of each item over both orders, and the unparseable count.

    Args:
        rows: Choice rows of these pairs (both orders, every sample).
        pairs: The pairs as the active-learning loop oriented them.
        pairwise: How rows become counts (:func:`cell_counts`).
    """
    wins: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        w1, w2, u = cell_counts(r, pairwise)
        for key, (x, y) in (((r.item, r.item_b), (w1, w2)), ((r.item_b, r.item), (w2, w1))):
            acc = wins.setdefault(key, [0, 0, 0])  # type: ignore[arg-type]
            acc[0] += x
            acc[1] += y
        wins[(r.item, r.item_b)][2] += u  # type: ignore[index]
    out = np.array(
        [[wins[(a, b)][0], wins[(a, b)][1], wins[(a, b)][2] + wins[(b, a)][2]] for a, b in pairs], dtype=float
    ).reshape(-1, 3)
    if pairwise.mode == "sample":  # whole answers stay whole numbers
        out = out.astype(np.int64)
    return out[:, 0], out[:, 1], out[:, 2]


def position_counts(rows: Sequence[PrefRow], ids: Sequence[str], pairwise: PairwiseConfig):
    """:class:`~steerlab.prefs.PairCounts` with one row per ordered (first-shown, second-shown) cell."""
    from steerlab.prefs import PairCounts

    pos = {i: n for n, i in enumerate(ids)}
    counts = np.array([cell_counts(r, pairwise) for r in rows], dtype=float).reshape(-1, 3)
    fractional = pairwise.mode == "dist"
    if not fractional:
        counts = counts.astype(np.int64)
    return PairCounts(
        tuple(ids),
        np.array([pos[r.item] for r in rows], dtype=np.int64),
        np.array([pos[r.item_b] for r in rows], dtype=np.int64),
        counts[:, 0],
        counts[:, 1],
        counts[:, 2],
        fractional=fractional,
    ).merged()


def summarise(
    cfg: PrefsRevealedConfig,
    result,
    choices: Sequence[PrefRow],
    comps: Sequence[PrefRow],
    stated_rows: Sequence[PrefRow],
    per_pair: int,
) -> PrefsRevealedSummary:
    """Every table of the report, from the loop's result and the rows alone."""
    from steerlab.prefs import (
        first_position_rate,
        order_consistency,
        win_rate_by_position,
    )
    from steerlab.stats.bootstrap import wilson_interval

    fit = result.fit
    ids = list(fit.item_ids)
    origin = {r.item: r.origin for r in comps}
    refused = {r.item: r.refusal == "refusal" for r in comps}
    stated = _stated(cfg, stated_rows)
    utilities = [
        UtilityRow(
            item=i,
            origin=origin[i],
            mu=round(float(m), 6),
            sigma=round(float(s), 6),
            refused=refused[i],
            stated=fin(stated.get(i)),
        )
        for i, m, s in zip(ids, fit.mu, fit.sigma)
    ]
    mu = dict(zip(ids, fit.mu))
    origins = sorted({origin[i] for i in ids})
    by_origin = [
        OriginMu(
            origin=o,
            n=sum(origin[i] == o for i in ids),
            mu=mean([float(mu[i]) for i in ids if origin[i] == o], cfg.bootstrap_resamples, cfg.seed),
        )
        for o in origins
    ]
    history = [
        RoundRow(
            round=h.round,
            pairs=h.n_comparisons // per_pair,
            comparisons=h.n_comparisons,
            spearman_prev=fin(h.spearman_prev),
            held_out_accuracy=fin(h.held_out.accuracy),
            held_out_nll=fin(h.held_out.nll),
        )
        for h in result.history
    ]
    counts = position_counts(choices, ids, cfg.pairwise)
    if counts.fractional:
        first_position, p_first = pair_level_p_first(choices, cfg.bootstrap_resamples, cfg.seed)
    else:
        k = int(counts.first_wins.sum())
        w = wilson_interval(k, counts.n_comparisons)  # NaN interval when nothing was parseable
        first_position = Estimate(value=fin(w.value), low=fin(w.low), high=fin(w.high), n=w.n)
        p_first = first_position_rate(counts).p_value if counts.n_comparisons else None
    cons = order_consistency(counts)
    position = [
        PositionRow(
            group=d.group,
            n=d.n,
            win_rate=fin(d.win_rate),
            win_rate_first=fin(d.win_rate_first),
            win_rate_second=fin(d.win_rate_second),
            expected_from_position=fin(d.expected_from_position),
            content_effect=fin(d.content_effect),
        )
        for d in (win_rate_by_position(counts, origin) if counts.n_comparisons else [])
    ]
    dist = [r for r in choices if r.mode == "dist" and r.probs is not None]
    refusal = [
        refusal_group(
            cfg.models[0].name,
            o,
            np.array([refused[i] for i in ids if o in ("all", origin[i])], dtype=int),
            np.array([mu[i] for i in ids if o in ("all", origin[i])], dtype=float),
            cfg.bootstrap_resamples,
            cfg.seed,
        )
        for o in [*origins, "all"]
    ]
    return PrefsRevealedSummary(
        name=cfg.name,
        template=cfg.pairwise.template,
        mode=cfg.pairwise.mode,
        n_tasks=len(ids),
        n_pairs=int(result.train.first.size + result.held_out.first.size),
        n_choice_cells=len(choices),
        unparseable=int(counts.unparseable.sum()),
        stop_reason=result.stop_reason,
        utilities=utilities,
        by_origin=by_origin,
        history=history,
        first_position=first_position,
        first_position_p=fin(p_first),
        first_position_unit="pairs" if counts.fractional else "comparisons",
        mean_p_first=fin(np.mean([r.probs[0] for r in dist])) if dist else None,
        letter_mass=fin(np.mean([r.scale_mass for r in dist])) if dist else None,
        order_consistency=fin(cons.rate),
        order_pairs=cons.n_consistent + cons.n_inconsistent,
        position=position,
        refusal=refusal,
        stated_revealed=_stated_revealed(stated_rows, mu, origin, cfg),
    )


def pair_means_p_first(rows: Sequence[PrefRow]) -> list[float]:
    """Per unordered pair scored in both orders, the mean of its two P(first-shown chosen).

    Without position bias P(first | A, B) + P(first | B, A) = P(A over B) + P(B over A) = 1, so
    each pair's mean is 0.5 whatever the tasks' contents; above 0.5 the model favours the first slot.
    """
    by_order = {(r.item, r.item_b): float(r.probs[0]) for r in rows if r.mode == "dist" and r.probs is not None}
    return [(p + by_order[(b, a)]) / 2 for (a, b), p in sorted(by_order.items()) if a < b and (b, a) in by_order]


def pair_level_p_first(rows: Sequence[PrefRow], n_resamples: int, seed: int) -> tuple[Estimate, float | None]:
    """Mean P(first) over pairs (:func:`pair_means_p_first`), its bootstrap interval over pairs,
    and the two-sided one-sample t-test of the pair means against 0.5 (None below 2 pairs)."""
    from scipy.stats import ttest_1samp

    means = pair_means_p_first(rows)
    if len(means) < 2:
        return mean(means, n_resamples, seed), None
    p = float(ttest_1samp(means, 0.5).pvalue) if np.ptp(means) > 0 else (1.0 if means[0] == 0.5 else 0.0)
    return mean(means, n_resamples, seed), p


def _stated(cfg: PrefsRevealedConfig, rows: Sequence[PrefRow]) -> dict[str, float]:
    if not rows:
        return {}
    frame = ratings_frame(rows)
    use_dist = bool(cfg.stated and cfg.stated.distribution) and frame["expected"].notna().any()
    per = per_completion(frame, use_dist)
    return dict(zip(per["item"], per["rating"]))


def _r(x: np.ndarray, y: np.ndarray, method: str) -> float | None:
    from steerlab.stats.correlation import correlate

    ok = ~np.isnan(x) & ~np.isnan(y)
    return fin(correlate(x[ok], y[ok], method)) if ok.sum() >= 3 else None  # type: ignore[arg-type]


def _stated_revealed(
    rows: Sequence[PrefRow], mu: dict[str, float], origin: dict[str, str], cfg: PrefsRevealedConfig
) -> list[StatedRevealed]:
    if not rows:
        return []
    from steerlab.stats.correlation import correlation_interval

    stated = _stated(cfg, rows)
    frame = ratings_frame(rows)
    sampled = frame[frame["mode"] == "sample"]
    out = []
    for o in [*sorted({origin[i] for i in mu}), "all"]:
        items = [i for i in mu if o in ("all", origin[i])]
        m = np.array([mu[i] for i in items], dtype=float)
        s = np.array([stated.get(i, np.nan) for i in items], dtype=float)
        both = int((~np.isnan(m) & ~np.isnan(s)).sum())
        pearson, spearman = _r(m, s, "pearson"), _r(m, s, "spearman")
        p_lo, p_hi = correlation_interval(pearson if pearson is not None else np.nan, both, "pearson")
        s_lo, s_hi = correlation_interval(spearman if spearman is not None else np.nan, both, "spearman")
        per_seed = []
        for _, part in sampled.groupby("seed"):
            vals = dict(zip(part["item"], part["value"]))
            r = _r(m, np.array([vals.get(i, np.nan) for i in items], dtype=float), "pearson")
            if r is not None:
                per_seed.append(r)
        out.append(
            StatedRevealed(
                origin=o,
                n=len(items),
                pearson=pearson,
                pearson_low=fin(p_lo),
                pearson_high=fin(p_hi),
                spearman=spearman,
                spearman_low=fin(s_lo),
                spearman_high=fin(s_hi),
                n_pairs=both,
                per_seed_mean=fin(np.mean(per_seed)) if per_seed else None,
                per_seed_sd=fin(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None,
                seeds=len(per_seed),
            )
        )
    return out
