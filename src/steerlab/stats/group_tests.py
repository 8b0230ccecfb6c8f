"""Two-group comparisons: point-biserial correlation and the Mann-Whitney U test.

Both drop missing values explicitly and report how many were dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import norm, rankdata
from scipy.stats import t as student_t

from steerlab.errors import InputError


@dataclass(frozen=True)
class PointBiserial:
    """Correlation of a binary variable with a continuous one.

    Attributes:
        r: Point-biserial r = (m1 - m0) / s * sqrt(n1 n0 / n^2), s the population std;
            equal to Pearson's r with the binary variable coded 0/1.
        p_value: Two-sided, from t = r sqrt((n - 2) / (1 - r^2)) with n - 2 df.
        n: Pairs used.
        n1: Pairs with the flag set.
        n0: Pairs without.
        mean1: Mean value where the flag is set.
        mean0: Mean value where it is not.
        n_dropped: Pairs dropped for a missing value or flag.
    """

    r: float
    p_value: float
    n: int
    n1: int
    n0: int
    mean1: float
    mean0: float
    n_dropped: int


def point_biserial(flag: np.ndarray, values: np.ndarray) -> PointBiserial:
    """Point-biserial correlation between a 0/1 (or bool) flag and values.

    Args:
        flag: 0/1 or bool, NaN for missing, shape (n,).
        values: Continuous values, NaN for missing, shape (n,).
    """
    f, v = np.asarray(flag, dtype=float), np.asarray(values, dtype=float)
    if f.shape != v.shape or f.ndim != 1:
        raise InputError(f"flag and values must be 1-d and equal length, got {f.shape}, {v.shape}")
    keep = ~np.isnan(f) & ~np.isnan(v)
    f, v = f[keep], v[keep]
    if not np.isin(f, (0.0, 1.0)).all():
        raise InputError("flag must be 0/1 (or bool)")
    n, n1 = f.size, int(f.sum())
    n0 = n - n1
    if n1 == 0 or n0 == 0 or np.ptp(v) == 0:
        raise InputError(f"point-biserial needs both groups and non-constant values (n1={n1}, n0={n0})")
    m1, m0 = v[f == 1].mean(), v[f == 0].mean()
    r = (m1 - m0) / v.std() * np.sqrt(n1 * n0 / n**2)
    if n > 2 and abs(r) < 1:
        p = 2 * student_t.sf(abs(r) * np.sqrt((n - 2) / (1 - r * r)), n - 2)
    else:
        p = 0.0 if abs(r) >= 1 else float("nan")
    return PointBiserial(float(r), float(p), n, n1, n0, float(m1), float(m0), int((~keep).sum()))


_ALTERNATIVES = ("two-sided", "greater", "less")


@dataclass(frozen=True)
class MannWhitney:
    """Mann-Whitney U test of x against y.

    Attributes:
        u: U of x: pairs (x_i, y_j) with x_i > y_j, ties counting 1/2.
        p_value: Normal approximation with tie and continuity correction.
        auc: u / (n_x n_y): P(X > Y) + P(X = Y) / 2 (common-language effect size).
        rank_biserial: 2 * auc - 1.
        n_x: Values of x used.
        n_y: Values of y used.
        n_dropped: Missing values dropped (both samples).
    """

    u: float
    p_value: float
    auc: float
    rank_biserial: float
    n_x: int
    n_y: int
    n_dropped: int


def mann_whitney(
    x: np.ndarray, y: np.ndarray, alternative: Literal["two-sided", "greater", "less"] = "two-sided"
) -> MannWhitney:
    """Mann-Whitney U test with midranks for ties (large-sample normal approximation).

    Args:
        x: First sample (NaN = missing).
        y: Second sample (NaN = missing).
        alternative: ``"greater"`` tests whether x tends to exceed y.
    """
    if alternative not in _ALTERNATIVES:
        raise InputError(f"unknown alternative {alternative!r}; expected one of {_ALTERNATIVES}")
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    dropped = int(np.isnan(x).sum() + np.isnan(y).sum())
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    nx, ny = x.size, y.size
    if nx == 0 or ny == 0:
        raise InputError("each sample needs at least one non-missing value")
    ranks = rankdata(np.concatenate([x, y]))  # midranks for ties
    u = ranks[:nx].sum() - nx * (nx + 1) / 2
    n = nx + ny
    _, tie_sizes = np.unique(np.concatenate([x, y]), return_counts=True)
    var = nx * ny / 12 * ((n + 1) - (tie_sizes**3 - tie_sizes).sum() / (n * (n - 1)))
    mean = nx * ny / 2
    if var <= 0:
        p = 1.0
    elif alternative == "two-sided":
        p = min(1.0, 2 * norm.sf((abs(u - mean) - 0.5) / np.sqrt(var)))
    elif alternative == "greater":
        p = norm.sf((u - mean - 0.5) / np.sqrt(var))
    else:  # "less"
        p = norm.cdf((u - mean + 0.5) / np.sqrt(var))
    auc = u / (nx * ny)
    return MannWhitney(float(u), float(p), float(auc), float(2 * auc - 1), nx, ny, dropped)
