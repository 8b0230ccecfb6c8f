"""Position bias statistics on a hand-made case."""

import math

import numpy as np
import pytest

from steerlab.errors import InputError
from steerlab.prefs import (
    PairCounts,
    ThurstonianOracle,
    first_position_rate,
    order_consistency,
    position_decomposition,
    win_rate_by_position,
)

# a is in group "x"; b, c in group "y".  Rows: (first, second, first_wins, second_wins)
ROWS = [("a", "b", 3, 1), ("b", "a", 2, 2), ("a", "c", 0, 2), ("c", "a", 1, 0), ("b", "c", 1, 0), ("c", "b", 1, 0)]
GROUPS = {"a": "x", "b": "y", "c": "y"}


def _data() -> PairCounts:
    ids = ("a", "b", "c")
    f, s, w1, w2 = zip(*ROWS)
    return PairCounts(
        ids,
        np.array([ids.index(x) for x in f]),
        np.array([ids.index(x) for x in s]),
        np.array(w1),
        np.array(w2),
        np.zeros(len(ROWS), int),
    )


def test_first_position_rate_by_hand():
    r = first_position_rate(_data())
    k, n = 3 + 2 + 0 + 1 + 1 + 1, 4 + 4 + 2 + 1 + 1 + 1  # 8 of 13
    assert (r.n_first, r.n, r.rate) == (k, n, k / n)
    # exact two-sided binomial p at p=0.5: 2 * P(X <= 5)
    p = 2 * sum(math.comb(n, i) for i in range(0, n - k + 1)) / 2**n
    assert r.p_value == pytest.approx(p)
    z, ph = 1.959963984540054, k / n
    centre = (ph + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n))
    assert (r.ci_low, r.ci_high) == pytest.approx((centre - half, centre + half))


def test_order_consistency_by_hand():
    oc = order_consistency(_data())
    # {a,b}: a wins when first (3-1), tie when second (2-2) -> tied.
    # {a,c}: c wins both ways -> consistent.  {b,c}: first shown wins both ways -> inconsistent.
    assert (oc.n_consistent, oc.n_inconsistent, oc.n_tied, oc.rate) == (1, 1, 1, 0.5)


def test_decomposition_by_hand():
    d = position_decomposition(_data(), GROUPS, "x")
    # a first: 3 of 4 (vs b) + 0 of 2 (vs c) = 3/6; a second: 2 of 4 + 0 of 1 = 2/5.
    assert (d.n, d.n_shown_first, d.win_rate_first, d.win_rate_second) == (11, 6, 0.5, 0.4)
    assert d.win_rate == pytest.approx(5 / 11)
    # expected from position alone: (6 * 8/13 + 5 * 5/13) / 11 = 73/143
    assert d.expected_from_position == pytest.approx(73 / 143)
    assert d.content_effect == pytest.approx(5 / 11 - 73 / 143)
    vs_c = position_decomposition(_data(), GROUPS, "x", opponent_group="y")
    assert vs_c.n == 11
    assert [r.group for r in win_rate_by_position(_data(), GROUPS)] == ["x", "y"]
    with pytest.raises(InputError, match="no group label"):
        position_decomposition(_data(), {"a": "x"}, "x")


def test_synthetic_bias_is_detected_and_content_effect_is_near_zero():
    rng = np.random.default_rng(0)
    n = 60
    oracle = ThurstonianOracle(np.zeros(n), np.ones(n), rng, position_bias=-0.3)  # favours second
    i, j = np.triu_indices(n, 1)
    data = oracle.counts(tuple(map(str, range(n))), np.r_[i, j], np.r_[j, i])
    r = first_position_rate(data)
    assert r.ci_high < 0.5 and r.p_value < 1e-6
    groups = {str(k): "x" if k < 30 else "y" for k in range(n)}
    d = position_decomposition(data, groups, "x")
    assert abs(d.content_effect) < 0.02  # equal utilities: no content effect
    assert d.win_rate_second > d.win_rate_first
