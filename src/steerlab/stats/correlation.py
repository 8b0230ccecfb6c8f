"""Correlation of ratings across seeds: mean and spread over all pairs of seeds; an interval for one r.

:func:`correlation_interval` is the Fisher-z interval ``tanh(atanh r ± z_q · se)``, with
``se = 1/√(n−3)`` for Pearson and the Fieller–Hartley–Pearson ``se = √(1.06/(n−3))`` for Spearman.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import norm, pearsonr, spearmanr

from steerlab.errors import InputError
from steerlab.prefs._ratings import Scale
from steerlab.stats._matrix import seed_matrix

Method = Literal["pearson", "spearman"]


@dataclass(frozen=True, eq=False)
class CrossSeedCorrelation:
    """Correlations between every pair of seeds of one (rater, template) condition.

    Attributes:
        method: ``"pearson"`` or ``"spearman"``.
        mean: Mean correlation over the seed pairs where it is defined.
        std: Sample standard deviation (ddof=1) over those pairs; NaN with fewer than two.
        n_pairs: Seed pairs with a defined correlation.
        n_undefined: Seed pairs skipped: fewer than ``min_items`` shared items, or a
            constant column (the correlation is undefined, not zero).
        pairs: One row per seed pair: ``seed_a``, ``seed_b``, ``r``, ``n_items``.
    """

    method: str
    mean: float
    std: float
    n_pairs: int
    n_undefined: int
    pairs: pd.DataFrame


def correlation_interval(r: float, n: int, method: Method, confidence: float = 0.95) -> tuple[float, float]:
    """Fisher-z interval of a correlation ``r`` over ``n`` pairs (module docstring); NaNs below 4 pairs.

    Example:
        >>> correlation_interval(0.5, 28, "pearson")  # (0.16, 0.74)
    """
    if method not in ("pearson", "spearman"):
        raise InputError(f"unknown correlation method {method!r}")
    if not 0 < confidence < 1:
        raise InputError(f"confidence must be in (0, 1), got {confidence}")
    if n < 4 or not np.isfinite(r):
        return float("nan"), float("nan")
    if abs(r) >= 1:
        return float(r), float(r)
    se = (1.0 if method == "pearson" else np.sqrt(1.06)) / np.sqrt(n - 3)
    half = float(norm.ppf(0.5 + confidence / 2)) * se
    z = float(np.arctanh(r))
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def correlate(x: np.ndarray, y: np.ndarray, method: Method) -> float:
    """Pearson or Spearman r of two equal-length arrays; NaN if either is constant."""
    if method not in ("pearson", "spearman"):
        raise InputError(f"unknown correlation method {method!r}")
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    fn = pearsonr if method == "pearson" else spearmanr
    return float(fn(x, y)[0])


def correlation_over_seed_pairs(
    matrix: pd.DataFrame, method: Method = "pearson", min_items: int = 3
) -> CrossSeedCorrelation:
    """Correlate every pair of columns of an items x seeds matrix (pairwise-complete items).

    Args:
        matrix: Items x seeds, NaN for missing.
        method: ``"pearson"`` or ``"spearman"``.
        min_items: Fewest shared non-missing items for a pair to count.
    """
    if matrix.shape[1] < 2:
        raise InputError(f"need at least two seeds, got {matrix.shape[1]}")
    rows = []
    for a, b in combinations(matrix.columns, 2):
        both = matrix[[a, b]].dropna()
        r = correlate(both[a].to_numpy(), both[b].to_numpy(), method) if len(both) >= min_items else float("nan")
        rows.append((a, b, r, len(both)))
    pairs = pd.DataFrame(rows, columns=["seed_a", "seed_b", "r", "n_items"])
    rs = pairs["r"].dropna().to_numpy()
    mean = float(rs.mean()) if rs.size else float("nan")
    std = float(rs.std(ddof=1)) if rs.size > 1 else float("nan")
    return CrossSeedCorrelation(method, mean, std, int(rs.size), int(len(pairs) - rs.size), pairs)


def cross_seed_correlation(
    ratings: pd.DataFrame, method: Method = "pearson", min_items: int = 3, *, scale: Scale | None
) -> CrossSeedCorrelation:
    """Cross-seed correlation of one (rater, template) condition.

    Samples within a seed are averaged; missing ratings are dropped pair by pair.

    Args:
        ratings: Long ratings (columns item, seed, value; one rater and template).
        method: ``"pearson"`` or ``"spearman"``.
        min_items: Fewest shared non-missing items for a seed pair to count.
        scale: The template's declared scale (required): a rating off it raises InputError.
            Pass None explicitly only for scores that are not answers on a declared scale.

    Example:
        >>> cross_seed_correlation(df[df.template == "anchored_1_5"], "spearman",
        ...                        scale=Scale.integer_range(1, 5)).mean
    """
    return correlation_over_seed_pairs(seed_matrix(ratings, scale), method, min_items)
