"""Point-biserial r and Mann-Whitney U by hand and against scipy / pingouin."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from steerlab.errors import InputError
from steerlab.stats import mann_whitney, point_biserial


def test_point_biserial_by_hand():
    r = point_biserial(np.array([1, 1, 0, 0, 0, np.nan]), np.array([5, 4, 2, 1, 3, 9]))
    # m1 = 4.5, m0 = 2, population std of (5,4,2,1,3) = sqrt(2); r = 2.5/sqrt(2) * sqrt(6/25)
    assert r.r == pytest.approx(2.5 / math.sqrt(2) * math.sqrt(6 / 25))  # = sqrt(3)/2
    # t = r sqrt(3 / (1 - 3/4)) = 3 with 3 df
    assert r.p_value == pytest.approx(2 * sps.t.sf(3.0, 3))
    assert (r.n, r.n1, r.n0, r.n_dropped) == (5, 2, 3, 1)


def test_point_biserial_against_scipy():
    rng = np.random.default_rng(0)
    flag = rng.random(80) < 0.3
    values = rng.normal(size=80) + flag
    ref = sps.pointbiserialr(flag, values)
    ours = point_biserial(flag, values)
    assert (ours.r, ours.p_value) == pytest.approx((ref.statistic, ref.pvalue))
    with pytest.raises(InputError):
        point_biserial(np.ones(5), np.arange(5.0))


def test_mann_whitney_by_hand():
    # x = (1, 3, 5), y = (2, 4): x beats y in (3,2), (5,2), (5,4) -> U = 3
    assert mann_whitney(np.array([1, 3, 5]), np.array([2, 4])).u == 3
    # ties count 1/2: x = (1, 2, 2), y = (2, 3): 0 + 1/2 + 1/2 -> U = 1, AUC = 1/6
    r = mann_whitney(np.array([1, 2, 2, np.nan]), np.array([2, 3]))
    assert (r.u, r.auc, r.rank_biserial, r.n_dropped) == pytest.approx((1, 1 / 6, -2 / 3, 1))


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_mann_whitney_against_scipy(alternative):
    rng = np.random.default_rng(1)
    x, y = rng.integers(1, 6, 40).astype(float), rng.integers(2, 6, 30).astype(float)  # many ties
    ref = sps.mannwhitneyu(x, y, alternative=alternative, method="asymptotic", use_continuity=True)
    ours = mann_whitney(x, y, alternative)
    assert (ours.u, ours.p_value) == pytest.approx((ref.statistic, ref.pvalue))


def test_mann_whitney_against_pingouin():
    pg = pytest.importorskip("pingouin")
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=30), rng.normal(0.5, 1, 25)
    ref = pg.mwu(x, y, alternative="two-sided", method="asymptotic")
    ours = mann_whitney(x, y)
    assert ours.u == pytest.approx(ref["U_val"].iloc[0])
    assert ours.rank_biserial == pytest.approx(ref["RBC"].iloc[0])
    assert ours.p_value == pytest.approx(ref["p_val"].iloc[0], rel=1e-6)


@pytest.mark.parametrize(
    "x, y",
    [
        (np.ones(4), np.ones(3)),  # all tied: variance 0
        (np.array([1.0, 2, 3]), np.array([4.0, 5])),
    ],
)
def test_mann_whitney_rejects_unknown_alternative_up_front(x, y):
    # Regression: on all-tied data the zero-variance branch returned p = 1 before the
    # alternative was ever looked at, so a typo passed silently.
    with pytest.raises(InputError, match="unknown alternative 'bogus'"):
        mann_whitney(x, y, "bogus")
    # the valid alternatives still give scipy's answer on the untied case (p = 1 when all tied)
    for alt in ("two-sided", "greater", "less"):
        expected = (
            1.0 if np.ptp(np.r_[x, y]) == 0 else sps.mannwhitneyu(x, y, alternative=alt, method="asymptotic").pvalue
        )
        assert mann_whitney(x, y, alt).p_value == pytest.approx(expected)
