"""A reported number: a rate or mean with its 95% interval and its n, as one record.

    rate(flags)                      proportion with its Wilson score interval
    mean(values, n_resamples, seed)  mean with its percentile-bootstrap interval

Every study's summary reports its numbers as :class:`Estimate`; an empty group gives
``Estimate(value=None, low=None, high=None, n=0)`` rather than a NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from steerlab.stats.bootstrap import bootstrap_mean, wilson_interval


class Estimate(BaseModel):
    """A rate or mean with its 95% interval and the number of rows (all None when n = 0)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    value: float | None
    low: float | None
    high: float | None
    n: int


def rate(flags: Sequence[bool]) -> Estimate:
    """A proportion with its Wilson 95% interval."""
    if not flags:
        return Estimate(value=None, low=None, high=None, n=0)
    e = wilson_interval(int(sum(bool(f) for f in flags)), len(flags))
    return Estimate(value=e.value, low=e.low, high=e.high, n=e.n)


def mean(values: Sequence[float], n_resamples: int, seed: int) -> Estimate:
    """A mean with its percentile-bootstrap 95% interval."""
    if not values:
        return Estimate(value=None, low=None, high=None, n=0)
    e = bootstrap_mean(np.asarray(values, dtype=float), n_resamples=n_resamples, seed=seed)
    return Estimate(value=e.value, low=e.low, high=e.high, n=e.n)
