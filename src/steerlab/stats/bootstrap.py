"""Confidence intervals for the rates and means in steerlab's reports.

* :func:`bootstrap_mean` / :func:`bootstrap_rate`: percentile bootstrap. Draw ``n_resamples``
  resamples of the ``n`` values with replacement (one ``(n_resamples, n)`` index array from a
  seeded :class:`numpy.random.Generator`), take each resample's mean, and report the
  ``alpha/2`` and ``1 - alpha/2`` quantiles of those means (numpy's default linear
  interpolation) around the plain sample mean.
* :func:`wilson_interval`: the Wilson score interval for a proportion, which stays inside
  [0, 1] and is sensible at 0 % and 100 %, where the bootstrap interval collapses to a point.

An empty sample gives ``Estimate(nan, nan, nan, 0)`` rather than an error, so a report can
show an empty cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

_MAX_DRAWS_PER_CHUNK = 4_000_000  # bounds the index array: chunks of resamples, same results


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a confidence interval.

    Attributes:
        value: The sample mean (or proportion).
        low: Lower end of the interval.
        high: Upper end of the interval.
        n: Number of observations.
    """

    value: float
    low: float
    high: float
    n: int


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def bootstrap_mean(
    values: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int | np.random.Generator = 0,
) -> Estimate:
    """Percentile-bootstrap confidence interval for a mean.

    Args:
        values: The observations (NaN is rejected).
        n_resamples: Number of bootstrap resamples.
        confidence: Interval coverage, e.g. 0.95.
        seed: Seed for ``numpy.random.default_rng`` or a Generator to draw from.

    Returns:
        ``Estimate(mean, low, high, n)``.

    Example:
        >>> e = bootstrap_mean([0.2, 0.4, 0.6, 0.8], seed=1)
        >>> round(e.value, 2), e.low <= e.value <= e.high
        (0.5, True)
    """
    _check_confidence(confidence)
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")
    x = np.asarray(values, dtype=float).ravel()
    n = x.size
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    if np.isnan(x).any():
        raise ValueError("values contain NaN")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    chunk = max(1, _MAX_DRAWS_PER_CHUNK // n)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))  # (resamples, n)
        means[start:stop] = x[idx].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Estimate(float(x.mean()), float(low), float(high), int(n))


def bootstrap_rate(
    flags: Sequence[bool] | np.ndarray,
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int | np.random.Generator = 0,
) -> Estimate:
    """Percentile-bootstrap interval for a rate (the mean of 0/1 flags).

    Args:
        flags: One boolean per row (e.g. "was refused").
        n_resamples: Number of bootstrap resamples.
        confidence: Interval coverage.
        seed: Seed or Generator.
    """
    return bootstrap_mean(
        np.asarray(flags, dtype=bool).astype(float), n_resamples=n_resamples, confidence=confidence, seed=seed
    )


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> Estimate:
    """Wilson score interval for a proportion ``successes / n``.

    With ``p = successes / n`` and ``z`` the normal quantile at ``1 - (1 - confidence) / 2``:
    ``centre = (p + z²/2n) / (1 + z²/n)``, ``half = z / (1 + z²/n) * sqrt(p(1-p)/n + z²/4n²)``.

    Args:
        successes: Number of positive rows, ``0 <= successes <= n``.
        n: Number of rows.
        confidence: Interval coverage.

    Example:
        >>> e = wilson_interval(5, 10)
        >>> round(e.low, 4), round(e.high, 4)
        (0.2366, 0.7634)
    """
    _check_confidence(confidence)
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At 0 and n successes the bounds are exactly 0 and 1; set them so rounding cannot leak in.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Estimate(p, low, high, n)
