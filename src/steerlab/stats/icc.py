"""Intraclass correlations from the two-way ANOVA of an n targets x k raters table.

Definitions follow McGraw & Wong (1996), with MSR (rows = targets), MSC (columns = raters,
here seeds), MSE (residual) and MSW = (SSC + SSE) / (n (k - 1)) (within targets):

    ICC(1,1) = (MSR - MSW) / (MSR + (k-1) MSW)          one-way random, single rating
    ICC(1,k) = (MSR - MSW) / MSR                        one-way random, mean of k
    ICC(C,1) = (MSR - MSE) / (MSR + (k-1) MSE)          consistency, single rating
    ICC(C,k) = (MSR - MSE) / MSR                        consistency, mean of k
    ICC(A,1) = (MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n)   absolute agreement
    ICC(A,k) = (MSR - MSE) / (MSR + (MSC - MSE) / n)                 absolute, mean of k

ICC(1) uses MSW, which includes rater (seed) differences; using MSE there instead (a
common mistake) gives ICC(C,1) and overstates ICC(1) whenever seeds shift the mean.
Targets with any missing rating are dropped (listwise) and counted.

No variance, no ICC: an ICC is a share of variance, so when a form's numerator and
denominator are both zero it is NaN (undefined), not 0 or 1. A constant table gives NaN for
all six forms. To make "zero" exact rather than a rounding residue (a constant table of
3.3s used to give ICC(1,1) = -0.5 and of 2.7s ICC(1,1) = 2.93), the table is shifted by its
first value (exact for equal values; ICCs are shift-invariant), the error sum of squares is
summed from residuals rather than obtained by subtraction, and a sum of squares smaller
than the rounding error of the data (deviations below ~64 ulps of the largest value) is
set to zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from steerlab.errors import InputError
from steerlab.prefs._ratings import Scale
from steerlab.stats._matrix import seed_matrix


@dataclass(frozen=True)
class ICCResult:
    """All six ICC forms and the ANOVA mean squares behind them.

    Attributes:
        icc1: ICC(1,1).
        icc1k: ICC(1,k).
        icc_c1: ICC(C,1).
        icc_ck: ICC(C,k).
        icc_a1: ICC(A,1).
        icc_ak: ICC(A,k).
        n: Targets used.
        k: Raters (seeds).
        n_dropped: Targets dropped for a missing rating.
        ms_rows: MSR.
        ms_cols: MSC.
        ms_error: MSE.
        ms_within: MSW.
    """

    icc1: float
    icc1k: float
    icc_c1: float
    icc_ck: float
    icc_a1: float
    icc_ak: float
    n: int
    k: int
    n_dropped: int
    ms_rows: float
    ms_cols: float
    ms_error: float
    ms_within: float


def _ratio(num: float, den: float) -> float:
    return num / den if den != 0 else float("nan")


_ROUNDING_ULPS = 64


def _sums_of_squares(x: np.ndarray) -> tuple[float, float, float]:
    """Rows, columns and residual sums of squares of a complete (n, k) table, with values
    at the level of rounding error set to exactly 0 (see the module docstring)."""
    x = x - x[0, 0]  # exact zeros for equal values
    grand, rows, cols = x.mean(), x.mean(axis=1), x.mean(axis=0)
    ss_rows = x.shape[1] * float(((rows - grand) ** 2).sum())
    ss_cols = x.shape[0] * float(((cols - grand) ** 2).sum())
    ss_err = float(((x - rows[:, None] - cols[None, :] + grand) ** 2).sum())
    noise = x.size * (_ROUNDING_ULPS * np.finfo(float).eps * float(np.abs(x).max())) ** 2

    def clean(ss: float) -> float:
        return 0.0 if ss <= noise else ss

    return clean(ss_rows), clean(ss_cols), clean(ss_err)


def icc_table(table: np.ndarray | pd.DataFrame) -> ICCResult:
    """ICCs of an n targets x k raters table (NaN = missing; such rows are dropped; ±inf raises InputError).

    A form whose numerator and denominator are both zero (e.g. every form on a constant
    table) is NaN: without variance the ICC is undefined.

    Args:
        table: Ratings, shape (n, k).
    """
    x = np.asarray(table, dtype=float)
    if x.ndim != 2:
        raise InputError(f"expected a 2-d targets x raters table, got shape {x.shape}")
    infinite = np.isinf(x)
    if infinite.any():
        r, c = (int(v) for v in np.argwhere(infinite)[0])
        raise InputError(
            f"icc_table: {int(infinite.sum())} infinite value(s), first at row {r}, column {c} ({x[r, c]}); "
            "an ICC needs finite ratings (mark a missing rating as NaN)"
        )
    keep = ~np.isnan(x).any(axis=1)
    x, dropped = x[keep], int((~keep).sum())
    n, k = x.shape
    if n < 2 or k < 2:
        raise InputError(f"need at least 2 complete targets and 2 raters, got {n} x {k}")
    ss_rows, ss_cols, ss_err = _sums_of_squares(x)
    msr, msc = ss_rows / (n - 1), ss_cols / (k - 1)
    mse, msw = ss_err / ((n - 1) * (k - 1)), (ss_cols + ss_err) / (n * (k - 1))
    return ICCResult(
        icc1=_ratio(msr - msw, msr + (k - 1) * msw),
        icc1k=_ratio(msr - msw, msr),
        icc_c1=_ratio(msr - mse, msr + (k - 1) * mse),
        icc_ck=_ratio(msr - mse, msr),
        icc_a1=_ratio(msr - mse, msr + (k - 1) * mse + k * (msc - mse) / n),
        icc_ak=_ratio(msr - mse, msr + (msc - mse) / n),
        n=n,
        k=k,
        n_dropped=dropped,
        ms_rows=float(msr),
        ms_cols=float(msc),
        ms_error=float(mse),
        ms_within=float(msw),
    )


def icc_a1_interval(res: ICCResult, level: float = 0.95) -> tuple[float, float]:
    """Confidence interval of ICC(A,1) (McGraw & Wong 1996, case 2A, with the Satterthwaite
    degrees of freedom), the interval pingouin and SPSS report. NaN bounds where ICC(A,1) is
    undefined or the mean squares leave no variance to test.

    Args:
        res: An :func:`icc_table` result.
        level: Coverage, e.g. 0.95.
    """
    from scipy.stats import f as f_dist

    n, k, icc = res.n, res.k, res.icc_a1
    msr, msc, mse = res.ms_rows, res.ms_cols, res.ms_error
    if not np.isfinite(icc) or icc >= 1 or mse <= 0:
        return float("nan"), float("nan")
    a = k * icc / (n * (1 - icc))
    b = 1 + k * icc * (n - 1) / (n * (1 - icc))
    num = (a * msc + b * mse) ** 2
    den = (a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1))
    v = num / den if den > 0 else float("inf")
    q = 1 - (1 - level) / 2
    f_lo, f_hi = float(f_dist.ppf(q, n - 1, v)), float(f_dist.ppf(q, v, n - 1))
    spread = k * msc + (k * n - k - n) * mse
    low = n * (msr - f_lo * mse) / (f_lo * spread + n * msr)
    high = n * (f_hi * msr - mse) / (spread + n * f_hi * msr)
    return float(low), float(high)


def icc_across_seeds(ratings: pd.DataFrame, *, scale: Scale | None) -> ICCResult:
    """ICCs of one (rater, template) condition with items as targets and seeds as raters.

    Samples within a seed are averaged first.

    Args:
        ratings: Long ratings (columns item, seed, value).
        scale: The template's declared scale (required): a rating off it raises InputError.
            Pass None explicitly only for scores that are not answers on a declared scale.
    """
    return icc_table(seed_matrix(ratings, scale))
