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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from steerlab.errors import InputError
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


def icc_table(table: np.ndarray | pd.DataFrame) -> ICCResult:
    """ICCs of an n targets x k raters table (NaN = missing; such rows are dropped).

    Args:
        table: Ratings, shape (n, k).
    """
    x = np.asarray(table, dtype=float)
    if x.ndim != 2:
        raise InputError(f"expected a 2-d targets x raters table, got shape {x.shape}")
    keep = ~np.isnan(x).any(axis=1)
    x, dropped = x[keep], int((~keep).sum())
    n, k = x.shape
    if n < 2 or k < 2:
        raise InputError(f"need at least 2 complete targets and 2 raters, got {n} x {k}")
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_err = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    msr, msc = ss_rows / (n - 1), ss_cols / (k - 1)
    mse, msw = ss_err / ((n - 1) * (k - 1)), (ss_cols + ss_err) / (n * (k - 1))
    return ICCResult(
        icc1=_ratio(msr - msw, msr + (k - 1) * msw),
        icc1k=_ratio(msr - msw, msr),
        icc_c1=_ratio(msr - mse, msr + (k - 1) * mse),
        icc_ck=_ratio(msr - mse, msr),
        icc_a1=_ratio(msr - mse, msr + (k - 1) * mse + k * (msc - mse) / n),
        icc_ak=_ratio(msr - mse, msr + (msc - mse) / n),
        n=n, k=k, n_dropped=dropped,
        ms_rows=float(msr), ms_cols=float(msc), ms_error=float(mse), ms_within=float(msw),
    )


def icc_across_seeds(ratings: pd.DataFrame) -> ICCResult:
    """ICCs of one (rater, template) condition with items as targets and seeds as raters.

    Samples within a seed are averaged first.

    Args:
        ratings: Long ratings (columns item, seed, value).
    """
    return icc_table(seed_matrix(ratings))
