"""How often do bootstrap intervals on mu cover the truth? A recovery study on synthetic data.

Each run draws true utilities mu ~ N(0, 1) and noise sigma = exp(N(0, sigma_spread^2)) for
``n_items`` items, asks every edge of a random ``degree``-regular graph ``samples`` times
(each time in a random order) of a :class:`~steerlab.prefs.ThurstonianOracle`, fits, draws
``n_boot`` bootstrap replicates once, and builds both interval methods of
:func:`~steerlab.prefs.bootstrap_mu` from the same replicates. Coverage is the share of
(item, run) intervals containing the true mu, centred to mean zero like the fit.

The defaults (σ = 1 for every item, the convention the penalty fixes) isolate the
estimator's own stretch. Run the table in docs/prefs.md with::

    python -m steerlab.prefs.coverage --runs 10 --n-boot 200
    python -m steerlab.prefs.coverage --runs 10 --n-boot 200 --sigma-spread 0.3 --designs 20x2
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from steerlab.prefs.graphs import random_regular_graph
from steerlab.prefs.resample import bootstrap_draws, intervals_from_draws
from steerlab.prefs.synthetic import ThurstonianOracle, random_orientation
from steerlab.prefs.thurstonian import fit_thurstonian


@dataclass(frozen=True)
class Coverage:
    """Averages over the runs of :func:`interval_coverage`.

    Attributes:
        n_items: Items per run.
        degree: Opponents per item (``n_items - 1``: every pair).
        samples: Times each pair was asked.
        runs: Independent runs.
        n_boot: Bootstrap replicates per run.
        level: Nominal coverage.
        stretch: Least-squares slope of the fitted mu on the true mu (1 = right scale).
        bootstrap_stretch: :attr:`MuIntervals.stretch`, the bootstrap's estimate of it.
        sigma_rms: Root mean square of the fitted sigma (the truth's is 1 by default).
        stretch_over_rms: Slope of fitted mu / sigma_rms on the truth (cause 1 removed).
        stretch_sigma_fixed: Slope when the fit holds every sigma at 1 (what is left is
            the ML overshoot, cause 2).
        coverage_percentile: Share of percentile intervals containing the truth.
        coverage_debiased: Share of debiased intervals containing the truth.
        width_percentile: Mean width of the percentile intervals.
        width_debiased: Mean width of the debiased intervals.
    """

    n_items: int
    degree: int
    samples: int
    runs: int
    n_boot: int
    level: float
    stretch: float
    bootstrap_stretch: float
    sigma_rms: float
    stretch_over_rms: float
    stretch_sigma_fixed: float
    coverage_percentile: float
    coverage_debiased: float
    width_percentile: float
    width_debiased: float


def _one_run(
    rng: np.random.Generator,
    n_items: int,
    degree: int,
    samples: int,
    n_boot: int,
    level: float,
    sigma_spread: float,
    lam: float,
) -> list[float]:
    mu = rng.normal(0.0, 1.0, n_items)
    sigma = np.exp(rng.normal(0.0, sigma_spread, n_items))
    oracle = ThurstonianOracle(mu, sigma, rng)
    first, second = random_orientation(random_regular_graph(n_items, degree, rng), rng)
    data = oracle.counts(tuple(map(str, range(n_items))), first, second, samples)
    fit = fit_thurstonian(data, lam=lam)
    draws = bootstrap_draws(data, fit, n_boot, rng)
    truth = mu - mu.mean()
    pct, deb = (intervals_from_draws(data, fit.mu, draws, level, m) for m in ("percentile", "debiased"))
    rms = float(np.sqrt(np.mean(fit.sigma**2)))
    fixed = fit_thurstonian(data, lam=lam, log_sigma_bounds=(-1e-9, 1e-9))

    def slope(estimate: np.ndarray) -> float:
        return float(np.polyfit(truth, estimate, 1)[0])

    return [
        slope(fit.mu),
        pct.stretch,
        rms,
        slope(fit.mu / rms),
        slope(fixed.mu),
        float(np.mean((pct.lo <= truth) & (truth <= pct.hi))),
        float(np.mean((deb.lo <= truth) & (truth <= deb.hi))),
        float(np.mean(pct.hi - pct.lo)),
        float(np.mean(deb.hi - deb.lo)),
    ]


def interval_coverage(
    n_items: int = 100,
    degree: int = 10,
    samples: int = 1,
    *,
    runs: int = 10,
    n_boot: int = 200,
    level: float = 0.95,
    sigma_spread: float = 0.0,
    lam: float = 1.0,
    seed: int = 0,
) -> Coverage:
    """Coverage of both bootstrap interval methods over ``runs`` synthetic recoveries.

    Args:
        n_items: Items per run.
        degree: Opponents per item (a random regular graph; ``n_items - 1`` asks every pair).
        samples: Times each pair is asked.
        runs: Independent runs (run ``r`` uses seed ``seed + r``).
        n_boot: Bootstrap replicates per run.
        level: Nominal coverage.
        sigma_spread: Standard deviation of the true log sigma.
        lam: Thurstonian penalty of the fits.
        seed: First seed.
    """
    rows = [
        _one_run(np.random.default_rng(seed + r), n_items, degree, samples, n_boot, level, sigma_spread, lam)
        for r in range(runs)
    ]
    means = np.mean(rows, axis=0)
    return Coverage(n_items, degree, samples, runs, n_boot, level, *(float(v) for v in means))


DESIGNS: tuple[tuple[int, int], ...] = ((10, 1), (10, 4), (20, 2), (99, 1))
"""(degree, samples) of the table in docs/prefs.md, all with 100 items."""


def main(argv: Sequence[str] | None = None) -> None:
    """Print the coverage table (markdown) for :data:`DESIGNS`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--n-items", type=int, default=100)
    parser.add_argument("--sigma-spread", type=float, default=0.0, help="sd of the true log sigma")
    parser.add_argument(
        "--designs", nargs="+", default=[f"{d}x{s}" for d, s in DESIGNS], help="DEGREExSAMPLES, e.g. 20x2"
    )
    args = parser.parse_args(argv)
    designs = [tuple(int(v) for v in d.split("x")) for d in args.designs]
    print(
        "| degree × samples | comparisons per item | stretch (fit vs truth) | bootstrap stretch "
        "| rms σ | stretch of μ / rms σ | stretch, σ held at 1 | coverage percentile | coverage debiased "
        "| width pct / debiased |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for degree, samples in designs:
        degree = min(degree, args.n_items - 1)
        c = interval_coverage(
            args.n_items, degree, samples, runs=args.runs, n_boot=args.n_boot, sigma_spread=args.sigma_spread
        )
        print(
            f"| {degree} × {samples} | {degree * samples} | {c.stretch:.2f} | {c.bootstrap_stretch:.2f} "
            f"| {c.sigma_rms:.2f} | {c.stretch_over_rms:.2f} | {c.stretch_sigma_fixed:.2f} "
            f"| {c.coverage_percentile:.3f} | {c.coverage_debiased:.3f} "
            f"| {c.width_percentile:.2f} / {c.width_debiased:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
