"""ICC forms on a hand-computed 3 x 2 table, and against pingouin."""

import math

import numpy as np
import pandas as pd
import pytest

from steerlab.errors import InputError
from steerlab.prefs import Scale
from steerlab.stats import icc_across_seeds, icc_table
from steerlab.stats.icc import icc_a1_interval

TABLE = np.array([[1, 3], [2, 3], [4, 6]], dtype=float)


def test_icc_by_hand():
    # grand mean 19/6; row means 2, 2.5, 5; column means 7/3, 4.
    # SSR = 2 * (49/36 + 16/36 + 121/36) = 31/3 -> MSR = 31/6
    # SSC = 3 * (25/36 + 25/36) = 25/6      -> MSC = 25/6
    # SST = 89/6, SSE = 89/6 - 62/6 - 25/6 = 1/3 -> MSE = 1/6
    # MSW = (25/6 + 1/3) / 3 = 3/2
    r = icc_table(TABLE)
    assert (r.ms_rows, r.ms_cols, r.ms_error, r.ms_within) == pytest.approx((31 / 6, 25 / 6, 1 / 6, 3 / 2))
    assert r.icc1 == pytest.approx((31 / 6 - 3 / 2) / (31 / 6 + 3 / 2))  # 0.55
    assert r.icc1k == pytest.approx(22 / 31)
    assert r.icc_c1 == pytest.approx(5 / (31 / 6 + 1 / 6))  # 0.9375
    assert r.icc_ck == pytest.approx(30 / 31)
    assert r.icc_a1 == pytest.approx(5 / (32 / 6 + 2 * (25 / 6 - 1 / 6) / 3))  # 0.625
    assert r.icc_ak == pytest.approx(10 / 13)
    assert r.icc1 < r.icc_c1  # ICC(1) is not ICC(C,1) when seeds shift the mean


def test_missing_rows_dropped_and_counted():
    r = icc_table(np.vstack([TABLE, [[np.nan, 2.0]]]))
    assert (r.n, r.k, r.n_dropped) == (3, 2, 1)
    assert r.icc1 == pytest.approx(0.55)
    with pytest.raises(InputError):
        icc_table(np.array([[1.0, 2.0]]))


def test_icc_from_long_ratings():
    rows = [(f"i{i}", "m", "t", s, 0, TABLE[i, s]) for i in range(3) for s in range(2)]
    frame = pd.DataFrame(rows, columns=["item", "rater", "template", "seed", "sample", "value"])
    assert icc_across_seeds(frame, scale=Scale.integer_range(1, 6)).icc_a1 == pytest.approx(0.625)


def test_against_pingouin():
    pg = pytest.importorskip("pingouin")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(25, 1)) + rng.normal(size=(1, 4)) * 0.5 + rng.normal(size=(25, 4)) * 0.7
    long = pd.DataFrame([(i, j, x[i, j]) for i in range(25) for j in range(4)], columns=["t", "r", "y"])
    ref = pg.intraclass_corr(long, targets="t", raters="r", ratings="y").set_index("Type")["ICC"]
    ours = icc_table(x)
    assert ours.icc1 == pytest.approx(ref["ICC(1,1)"])
    assert ours.icc_a1 == pytest.approx(ref["ICC(A,1)"])
    assert ours.icc_c1 == pytest.approx(ref["ICC(C,1)"])
    assert ours.icc1k == pytest.approx(ref["ICC(1,k)"])
    assert ours.icc_ak == pytest.approx(ref["ICC(A,k)"])
    assert ours.icc_ck == pytest.approx(ref["ICC(C,k)"])


@pytest.mark.parametrize("seed, n, k", [(0, 25, 4), (1, 12, 2), (2, 7, 3)])
def test_icc_a1_interval_against_pingouin(seed, n, k):
    pg = pytest.importorskip("pingouin")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1)) + rng.normal(size=(1, k)) * 0.5 + rng.normal(size=(n, k)) * 0.7
    long = pd.DataFrame([(i, j, x[i, j]) for i in range(n) for j in range(k)], columns=["t", "r", "y"])
    ref = pg.intraclass_corr(long, targets="t", raters="r", ratings="y").set_index("Type").loc["ICC(A,1)", "CI95"]
    low, high = icc_a1_interval(icc_table(x))
    assert (low, high) == pytest.approx((ref[0], ref[1]), abs=0.005 + 1e-9)  # pingouin rounds its bounds to 2 places
    assert low < icc_table(x).icc_a1 < high
    # unrounded: the same bounds from the other algebraic form of the Satterthwaite df (via F_j = MSC/MSE)
    from scipy.stats import f

    r = icc_table(x)
    fj, icc = r.ms_cols / r.ms_error, r.icc_a1
    v = (k - 1) * (n - 1) * (k * icc * fj + n * (1 + (k - 1) * icc) - k * icc) ** 2
    v /= (n - 1) * k**2 * icc**2 * fj**2 + (n * (1 + (k - 1) * icc) - k * icc) ** 2
    fu, fl = f.ppf(0.975, n - 1, v), f.ppf(0.975, v, n - 1)
    spread = k * r.ms_cols + (k * n - k - n) * r.ms_error
    assert low == pytest.approx(n * (r.ms_rows - fu * r.ms_error) / (fu * spread + n * r.ms_rows), rel=1e-9)
    assert high == pytest.approx(n * (fl * r.ms_rows - r.ms_error) / (spread + n * fl * r.ms_rows), rel=1e-9)


FORMS = ("icc1", "icc1k", "icc_c1", "icc_ck", "icc_a1", "icc_ak")


@pytest.mark.parametrize("value", [3.3, 2.7, 0.1, 1 / 3, 4.0])
def test_constant_table_has_undefined_iccs(value):
    # Regression: a constant table of non-integer ratings left rounding residues in the mean
    # squares (~1e-30, some negative) and gave arbitrary ICCs (3.3 -> ICC(1,1) = -0.5,
    # 2.7 -> 2.93). No variance at all: every form is 0/0, i.e. NaN.
    r = icc_table(np.full((4, 3), value))
    assert all(math.isnan(getattr(r, f)) for f in FORMS)
    assert (r.ms_rows, r.ms_cols, r.ms_error, r.ms_within) == (0.0, 0.0, 0.0, 0.0)
    rows = [(f"i{i}", "m", "t", s, j, value) for i in range(4) for s in range(3) for j in range(3)]
    frame = pd.DataFrame(rows, columns=["item", "rater", "template", "seed", "sample", "value"])
    assert math.isnan(icc_across_seeds(frame, scale=None).icc1)  # samples averaged first


def test_degenerate_non_integer_tables_by_formula():
    # Identical targets, seeds differ by 0.1 / 0.2 (rounding-prone): MSR = MSE = 0, MSW = MSC / n.
    # Then ICC(1,1) = -MSW / ((k-1) MSW) = -1/(k-1); ICC(A,*) = 0 / (k MSC / n) = 0; ICC(1,k),
    # ICC(C,*) have a zero denominator: NaN.
    same_targets = icc_table(np.tile([0.3, 0.4, 0.6], (5, 1)))
    assert same_targets.icc1 == pytest.approx(-1 / 2)
    assert (same_targets.icc_a1, same_targets.icc_ak) == (0.0, 0.0)
    assert all(math.isnan(getattr(same_targets, f)) for f in ("icc1k", "icc_c1", "icc_ck"))
    # Each target constant across seeds, targets differ: MSC = MSE = MSW = 0, every form 1.
    constant_targets = icc_table(np.repeat([[0.1], [0.7], [0.3], [2.9]], 3, axis=1))
    assert [getattr(constant_targets, f) for f in FORMS] == pytest.approx([1.0] * 6)


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_value_raises_instead_of_all_nan(bad):
    table = np.array([[1.0, 2.0], [3.0, 3.0], [2.0, bad]])
    with pytest.raises(InputError, match=r"1 infinite value\(s\), first at row 2, column 1"):
        icc_table(table)
    # the same row marked missing is dropped, and the rest equals the 2-row table by hand
    table[2, 1] = np.nan
    assert icc_table(table).icc_c1 == pytest.approx(icc_table(table[:2]).icc_c1)
