"""How a rater uses a template's scale: KL divergence from uniform on the DECLARED support.

KL(p || uniform_K) = sum_v p(v) log(K p(v)) = log K - H(p), in nats, where p is the share
of non-missing ratings at each of the K values the template declares (values never used
count as p = 0). Computing it over only the values observed would understate clustering.
Dividing by log K (the maximum, reached when one value takes every rating) gives a number
in [0, 1] that compares across scales of different size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steerlab.errors import InputError
from steerlab.prefs._ratings import Scale


@dataclass(frozen=True)
class KLFromUniform:
    """Result of :func:`kl_from_uniform`.

    Attributes:
        kl: KL(p || uniform) in nats.
        kl_normalized: ``kl / log K``, in [0, 1].
        k: Declared support size.
        n: Non-missing ratings used.
        n_missing: Missing ratings ignored.
        distribution: Share of ratings at each declared value, shape (K,).
    """

    kl: float
    kl_normalized: float
    k: int
    n: int
    n_missing: int
    distribution: tuple[float, ...]


def value_distribution(values: np.ndarray, scale: Scale) -> tuple[np.ndarray, int, int]:
    """Counts at each declared value, plus (n used, n missing); off-support values raise."""
    v = np.asarray(values, dtype=float).ravel()
    missing = int(np.isnan(v).sum())
    v = v[~np.isnan(v)]
    scale.check(v)
    idx = np.searchsorted(np.asarray(scale.values), v)
    return np.bincount(idx, minlength=scale.k), int(v.size), missing


def kl_from_uniform(values: np.ndarray, scale: Scale) -> KLFromUniform:
    """KL divergence of the rating distribution from uniform over ``scale`` (see module doc).

    Args:
        values: Ratings (NaN = missing), any shape.
        scale: The support the template declares.

    Example:
        >>> kl_from_uniform(df.value.to_numpy(), Scale.integer_range(1, 5)).kl_normalized
    """
    counts, n, missing = value_distribution(values, scale)
    if n == 0:
        raise InputError("no non-missing ratings")
    p = counts / n
    nz = p > 0
    kl = float(np.sum(p[nz] * np.log(scale.k * p[nz])))
    return KLFromUniform(kl, kl / np.log(scale.k), scale.k, n, missing, tuple(float(x) for x in p))
