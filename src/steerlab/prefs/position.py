"""Position bias in pairwise judgements.

Every function reads :class:`PairCounts`, which keep which item was shown first. Unparseable
answers are ignored throughout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from steerlab.errors import InputError
from steerlab.prefs._pairs import PairCounts
from steerlab.stats.bootstrap import wilson_interval


@dataclass(frozen=True)
class FirstPositionRate:
    """How often the first-shown item was chosen.

    Attributes:
        rate: first-chosen / parseable comparisons.
        n_first: Comparisons where the first-shown item was chosen.
        n: Parseable comparisons.
        ci_low: Lower end of the Wilson score interval (:func:`steerlab.stats.bootstrap.wilson_interval`).
        ci_high: Upper end of the Wilson score interval.
        p_value: Exact two-sided binomial test of rate = 0.5.
    """

    rate: float
    n_first: int
    n: int
    ci_low: float
    ci_high: float
    p_value: float


def first_position_rate(data: PairCounts, level: float = 0.95) -> FirstPositionRate:
    """P(first-shown item chosen), with a binomial test against 0.5 and a Wilson interval.

    Args:
        data: Pair counts.
        level: Interval coverage.
    """
    k, n = int(data.first_wins.sum()), data.n_comparisons
    if n == 0:
        raise InputError("no parseable comparisons")
    ci = wilson_interval(k, n, confidence=level)
    return FirstPositionRate(k / n, k, n, ci.low, ci.high, float(binomtest(k, n, 0.5).pvalue))


@dataclass(frozen=True)
class OrderConsistency:
    """Agreement of a judge with itself when a pair is asked both ways round.

    For each unordered pair asked in both orders, the majority choice in each order is
    taken (by item, not position). The pair is consistent if the same item wins both
    orders. Pairs with a tied majority in either order are excluded and counted.

    Attributes:
        rate: consistent / (consistent + inconsistent); NaN if no pair qualifies.
        n_consistent: Pairs where the same item won in both orders.
        n_inconsistent: Pairs where the winner followed the position.
        n_tied: Pairs asked both ways but with a tie in at least one order.
    """

    rate: float
    n_consistent: int
    n_inconsistent: int
    n_tied: int


def order_consistency(data: PairCounts) -> OrderConsistency:
    """Order-consistency rate over pairs asked in both orders (see :class:`OrderConsistency`).

    Args:
        data: Pair counts (rows of the same ordered pair are summed first).
    """
    d = data.merged()
    n = d.n_items
    margin = d.first_wins - d.second_wins  # > 0: first-shown item won
    key_fwd = d.first * n + d.second
    key_rev = d.second * n + d.first
    order = np.argsort(key_fwd)  # merged: keys are unique
    at = np.clip(np.searchsorted(key_fwd, key_rev, sorter=order), 0, max(key_fwd.size - 1, 0))
    partner = np.where(key_fwd[order][at] == key_rev, order[at], -1) if key_fwd.size else key_fwd
    both = (partner >= 0) & (d.first < d.second)  # each unordered pair once
    m1, m2 = margin[both], margin[partner[both]]
    tied = (m1 == 0) | (m2 == 0)
    consistent = int((np.sign(m1) == -np.sign(m2))[~tied].sum())  # same item won both ways
    inconsistent = int((~tied).sum()) - consistent
    total = consistent + inconsistent
    return OrderConsistency(consistent / total if total else float("nan"), consistent, inconsistent, int(tied.sum()))


@dataclass(frozen=True)
class PositionDecomposition:
    """A group's observed win rate split into a position part and a content part.

    Attributes:
        group: The group analysed.
        opponent_group: The opponents' group, or None for all other groups.
        n: Comparisons of the group against those opponents.
        n_shown_first: Of these, comparisons where the group's item was shown first.
        win_rate: Observed win rate of the group.
        win_rate_first: Win rate when shown first (NaN if never).
        win_rate_second: Win rate when shown second (NaN if never).
        p_first: Overall rate at which the first-shown item is chosen (all comparisons).
        expected_from_position: Win rate expected from position alone:
            (n_shown_first * p_first + n_shown_second * (1 - p_first)) / n.
        content_effect: ``win_rate - expected_from_position``.
    """

    group: str
    opponent_group: str | None
    n: int
    n_shown_first: int
    win_rate: float
    win_rate_first: float
    win_rate_second: float
    p_first: float
    expected_from_position: float
    content_effect: float


def _group_rows(
    data: PairCounts, groups: Mapping[str, str], group: str, opponent: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Masks of rows where the group's item is first (resp. second) against the opponents."""
    missing = [i for i in data.item_ids if i not in groups]
    if missing:
        raise InputError(f"no group label for item {missing[0]!r}")
    label = np.array([groups[i] for i in data.item_ids], dtype=object)
    g1, g2 = label[data.first] == group, label[data.second] == group
    o1 = (label[data.first] == opponent) if opponent is not None else ~g1
    o2 = (label[data.second] == opponent) if opponent is not None else ~g2
    return g1 & o2, g2 & o1


def position_decomposition(
    data: PairCounts, groups: Mapping[str, str], group: str, opponent_group: str | None = None
) -> PositionDecomposition:
    """Win rate by position for one item group, and its position/content decomposition.

    Args:
        data: Pair counts.
        groups: Item id -> group label (e.g. origin dataset).
        group: The group whose wins are counted.
        opponent_group: Restrict to comparisons against this group (default: all others).
    """
    as_first, as_second = _group_rows(data, groups, group, opponent_group)
    w1 = int(data.first_wins[as_first].sum())
    n1 = int((data.first_wins + data.second_wins)[as_first].sum())
    w2 = int(data.second_wins[as_second].sum())
    n2 = int((data.first_wins + data.second_wins)[as_second].sum())
    if n1 + n2 == 0:
        raise InputError(f"group {group!r} has no parseable comparisons against {opponent_group or 'others'!r}")
    p_first = first_position_rate(data).rate
    expected = (n1 * p_first + n2 * (1 - p_first)) / (n1 + n2)
    observed = (w1 + w2) / (n1 + n2)
    nan = float("nan")
    return PositionDecomposition(
        group,
        opponent_group,
        n1 + n2,
        n1,
        observed,
        w1 / n1 if n1 else nan,
        w2 / n2 if n2 else nan,
        p_first,
        expected,
        observed - expected,
    )


def win_rate_by_position(data: PairCounts, groups: Mapping[str, str]) -> list[PositionDecomposition]:
    """:func:`position_decomposition` for every group against all other groups.

    Groups with no parseable comparison against another group are left out.

    Args:
        data: Pair counts.
        groups: Item id -> group label.
    """
    labels = sorted({groups[i] for i in data.item_ids if i in groups})
    out = []
    for g in labels:
        as_first, as_second = _group_rows(data, groups, g, None)
        if (data.first_wins + data.second_wins)[as_first | as_second].sum() > 0:
            out.append(position_decomposition(data, groups, g))
    return out
