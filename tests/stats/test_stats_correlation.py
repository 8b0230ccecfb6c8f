"""Cross-seed correlations on a hand-computed case; missing values pair by pair."""

import math

import numpy as np
import pandas as pd
import pytest

from steerlab.errors import InputError
from steerlab.prefs import Scale
from steerlab.stats import cross_seed_correlation

S15 = Scale.integer_range(1, 5)


def _long(matrix: dict[str, list[float]], samples: int = 1) -> pd.DataFrame:
    rows = [
        (item, "m", "t", seed, s, v)
        for item, vals in matrix.items()
        for seed, v in enumerate(vals)
        for s in range(samples)
    ]
    return pd.DataFrame(rows, columns=["item", "rater", "template", "seed", "sample", "value"])


# seeds as columns: s0 = (1, 2, 3), s1 = (2, 3, 5), s2 = (1, 3, 4)
MATRIX = {"i1": [1, 2, 1], "i2": [2, 3, 3], "i3": [3, 5, 4]}


def test_pearson_by_hand():
    res = cross_seed_correlation(_long(MATRIX, samples=2), scale=S15)  # samples averaged (identical here)
    # r(s0,s1): deviations (-1,0,1), (-4/3,-1/3,5/3): cov 3, ss 2 and 42/9 -> 9/sqrt(84)
    # r(s0,s2): (-1,0,1), (-5/3,1/3,4/3): cov 3, ss 2 and 42/9 -> 9/sqrt(84)
    # r(s1,s2): cov 20/9 - 1/9 + 20/9 = 39/9, ss 42/9 each -> 39/42
    rs = [9 / math.sqrt(84), 9 / math.sqrt(84), 39 / 42]
    assert res.pairs["r"].tolist() == pytest.approx(rs)
    assert res.mean == pytest.approx(sum(rs) / 3)
    assert res.std == pytest.approx(np.std(rs, ddof=1))
    assert (res.n_pairs, res.n_undefined) == (3, 0)
    assert cross_seed_correlation(_long(MATRIX), "spearman", scale=S15).mean == 1.0  # ranks agree exactly


def test_missing_values_dropped_pairwise_and_constant_is_undefined():
    m = dict(MATRIX, i4=[np.nan, 1, 5])
    res = cross_seed_correlation(_long(m), scale=S15)
    s1, s2 = np.array([2, 3, 5, 1.0]), np.array([1, 3, 4, 5.0])
    assert res.pairs["n_items"].tolist() == [3, 3, 4]
    assert res.pairs["r"].iloc[2] == pytest.approx(np.corrcoef(s1, s2)[0, 1])
    flat = cross_seed_correlation(_long({"a": [1, 2], "b": [1, 3], "c": [1, 4]}), scale=S15)
    assert flat.n_undefined == 1 and math.isnan(flat.mean)  # seed 0 constant


def test_mixed_conditions_rejected():
    frame = _long(MATRIX)
    frame.loc[0, "template"] = "other"
    with pytest.raises(InputError, match="slice"):
        cross_seed_correlation(frame, scale=S15)


def test_correlation_interval_by_hand():
    """Fisher z by hand: r = 0.5 over n = 28 pairs, z = atanh(0.5) ± 1.959964 / 5."""
    from steerlab.stats.correlation import correlation_interval

    z, half = 0.5 * math.log(3.0), 1.959963985 / 5
    lo, hi = correlation_interval(0.5, 28, "pearson")
    assert (lo, hi) == pytest.approx((math.tanh(z - half), math.tanh(z + half)), abs=1e-9)
    lo_s, hi_s = correlation_interval(0.5, 28, "spearman")  # wider by √1.06
    assert (lo_s, hi_s) == pytest.approx((math.tanh(z - half * 1.06**0.5), math.tanh(z + half * 1.06**0.5)), abs=1e-9)
    # scipy's own Pearson interval (Fisher) on data with that r agrees
    from scipy.stats import pearsonr

    rng = np.random.default_rng(0)
    x = rng.normal(size=28)
    y = x + rng.normal(size=28)
    res = pearsonr(x, y)
    ci = res.confidence_interval(0.95)
    assert correlation_interval(float(res.statistic), 28, "pearson") == pytest.approx((ci.low, ci.high), abs=1e-9)
    assert all(math.isnan(v) for v in correlation_interval(0.5, 3, "pearson"))
