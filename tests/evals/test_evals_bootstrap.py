"""Bootstrap and Wilson intervals (steerlab.stats.bootstrap) against exact and by-hand references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from steerlab.stats import bootstrap as bs
from steerlab.stats.bootstrap import (
    Estimate,
    bootstrap_mean,
    bootstrap_rate,
    wilson_interval,
)

Z95 = 1.959963984540054


def _wilson_by_roots(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson bounds as the roots of (p_hat - p)^2 = z^2 p (1 - p) / n, a quadratic in p."""
    ph = k / n
    roots = np.roots([1 + z * z / n, -(2 * ph + z * z / n), ph * ph])
    lo, hi = sorted(float(r.real) for r in roots)
    return lo, hi


@pytest.mark.parametrize(("k", "n"), [(0, 10), (5, 10), (9, 20), (20, 20), (1, 66), (37, 44)])
def test_wilson_matches_the_quadratic_roots(k: int, n: int) -> None:
    e = wilson_interval(k, n)
    lo, hi = _wilson_by_roots(k, n)
    assert (e.value, e.n) == (k / n, n)
    assert e.low == pytest.approx(max(lo, 0.0), abs=1e-9)
    assert e.high == pytest.approx(min(hi, 1.0), abs=1e-9)


def test_wilson_published_value_and_edges() -> None:
    e = wilson_interval(5, 10)
    assert (round(e.low, 4), round(e.high, 4)) == (0.2366, 0.7634)
    assert wilson_interval(0, 10).low == 0.0 and wilson_interval(10, 10).high == 1.0
    assert wilson_interval(3, 10, confidence=0.99).low < wilson_interval(3, 10).low
    assert math.isnan(wilson_interval(0, 0).value)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    with pytest.raises(ValueError):
        wilson_interval(1, 10, confidence=1.0)


def test_bootstrap_matches_the_exact_bootstrap_distribution() -> None:
    x = [1.0, 2.0, 3.0, 10.0]
    # all 4^4 equally likely resamples, enumerated
    exact = [np.mean([x[i] for i in idx]) for idx in itertools.product(range(4), repeat=4)]
    lo, hi = np.quantile(exact, [0.025, 0.975])
    e = bootstrap_mean(x, n_resamples=100_000, seed=1)
    assert e == Estimate(4.0, pytest.approx(lo), pytest.approx(hi), 4)


def test_bootstrap_close_to_normal_theory_for_a_large_sample() -> None:
    x = np.random.default_rng(7).normal(2.0, 3.0, size=400)
    e = bootstrap_mean(x, n_resamples=20_000, seed=3)
    half = Z95 * x.std(ddof=1) / math.sqrt(x.size)
    assert e.value == pytest.approx(x.mean())
    assert e.low == pytest.approx(x.mean() - half, abs=0.1 * half)
    assert e.high == pytest.approx(x.mean() + half, abs=0.1 * half)


def test_seeding_and_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    x = [0.1, 0.5, 0.2, 0.9, 0.4]
    a = bootstrap_mean(x, n_resamples=500, seed=11)
    assert bootstrap_mean(x, n_resamples=500, seed=np.random.default_rng(11)) == a
    assert bootstrap_mean(x, n_resamples=500, seed=12) != a
    monkeypatch.setattr(bs, "_MAX_DRAWS_PER_CHUNK", 7)  # one resample per chunk
    assert bootstrap_mean(x, n_resamples=500, seed=11) == a


def test_rates_constant_samples_and_empty() -> None:
    e = bootstrap_rate([True] * 3 + [False] * 7, seed=0)
    assert e.value == pytest.approx(0.3) and 0.0 <= e.low < 0.3 < e.high <= 1.0 and e.n == 10
    assert bootstrap_rate([True] * 5) == Estimate(1.0, 1.0, 1.0, 5)
    empty = bootstrap_mean([])
    assert empty.n == 0 and math.isnan(empty.value) and math.isnan(empty.low)
    with pytest.raises(ValueError):
        bootstrap_mean([1.0, math.nan])
