"""Benchmark of the preference-statistics core; writes bench/results/prefs.json.

Run: python -m bench.bench_prefs
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from steerlab._io import atomic_write_json
from steerlab.prefs import (
    ActiveLearningConfig,
    ThurstonianOracle,
    bootstrap_mu,
    evaluate_pairs,
    fit_bradley_terry,
    fit_thurstonian,
    random_pairs,
    random_regular_graph,
    run_active_learning,
)
from steerlab.prefs.graphs import pair_keys
from steerlab.prefs.synthetic import random_orientation

OUT = Path(__file__).parent / "results" / "prefs.json"


def truth(n: int, seed: int, spread: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """True mu ~ N(0, spread^2) and sigma ~ logNormal(0, 0.3^2)."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, spread, n), np.exp(rng.normal(0, 0.3, n))


def fit_timing(n: int = 500, degree: int = 28, repeats: int = 5) -> dict[str, Any]:
    """Fit time and quality for n items on a random degree-regular graph (n*degree/2 comparisons)."""
    rng = np.random.default_rng(0)
    mu, sigma = truth(n, 0, spread=1.5)
    oracle, ids = ThurstonianOracle(mu, sigma, rng), tuple(map(str, range(n)))
    graph = random_regular_graph(n, degree, rng)
    train = oracle.counts(ids, *random_orientation(graph, rng))
    held = oracle.counts(ids, *random_orientation(random_pairs(n, 2000, rng, pair_keys(graph, n)), rng))
    times, fit = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        fit = fit_thurstonian(train)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    bt = fit_bradley_terry(train)
    bt_time = time.perf_counter() - t
    t = time.perf_counter()
    bootstrap_mu(train, fit, n_boot=50, rng=rng)
    boot_time = time.perf_counter() - t
    return {
        "n_items": n,
        "n_comparisons": train.n_comparisons,
        "lam": fit.lam,
        "fit_seconds_median": float(np.median(times)),
        "fit_seconds_all": times,
        "lbfgs_iterations": fit.n_iter,
        "spearman_to_truth": float(spearmanr(fit.mu, mu)[0]),
        "held_out_accuracy": evaluate_pairs(fit, held).accuracy,
        "held_out_accuracy_oracle": evaluate_pairs(oracle, held).accuracy,
        "held_out_nll": evaluate_pairs(fit, held).nll,
        "held_out_nll_oracle": evaluate_pairs(oracle, held).nll,
        "bradley_terry_seconds": bt_time,
        "bradley_terry_spearman": float(spearmanr(bt.scores, mu)[0]),
        "bradley_terry_held_out_accuracy": evaluate_pairs(bt, held).accuracy,
        "bootstrap_50_seconds": boot_time,
    }


def sparse_vs_dense(n: int = 100, seed: int = 1) -> dict[str, Any]:
    """Seed 004's two synthetic designs: all pairs (both orders) vs a d=5 regular graph."""
    rng = np.random.default_rng(seed)
    mu, sigma = truth(n, seed, spread=1.0)
    oracle, ids = ThurstonianOracle(mu, sigma, rng), tuple(map(str, range(n)))
    i, j = np.triu_indices(n, 1)
    held = oracle.counts(ids, *random_orientation(random_pairs(n, 1000, rng), rng))
    designs = {
        "dense": oracle.counts(ids, np.r_[i, j], np.r_[j, i]),
        "sparse_d5": oracle.counts(ids, *random_orientation(random_regular_graph(n, 5, rng), rng)),
    }
    out: dict[str, Any] = {"held_out_accuracy_oracle": evaluate_pairs(oracle, held).accuracy}
    for name, data in designs.items():
        row: dict[str, Any] = {"n_comparisons": data.n_comparisons}
        for lam in (0.0, 0.1, 1.0, 10.0):
            fit = fit_thurstonian(data, lam=lam, log_sigma_bounds=(-6.0, 6.0))
            row[f"lam={lam:g}"] = {
                "spearman": float(spearmanr(fit.mu, mu)[0]),
                "max_sigma": float(fit.sigma.max()),
                "held_out_accuracy": evaluate_pairs(fit, held).accuracy,
                "held_out_nll": evaluate_pairs(fit, held).nll,
            }
        out[name] = row
    return out


def active_vs_random(n: int = 500, seed: int = 0, target: float = 0.99) -> dict[str, Any]:
    """Comparisons needed to reach Spearman >= target with the truth, and the self-stopped runs."""
    mu, sigma = truth(n, seed)
    ids = tuple(map(str, range(n)))
    out: dict[str, Any] = {"n_items": n, "seed": seed, "target": target}
    for strategy in ("active", "random"):
        # (a) fine schedule, no stopping rule: first round at which truth correlation >= target
        hit: list[int] = []
        cfg = ActiveLearningConfig(strategy=strategy, growth=0.1, threshold=1.1, max_comparisons=120 * n, seed=seed)
        run_active_learning(
            ids,
            ThurstonianOracle(mu, sigma, np.random.default_rng(seed + 1)),
            cfg,
            lambda rec, fit, hit=hit: (
                hit.append(rec.n_comparisons) if not hit and spearmanr(fit.mu, mu)[0] >= target else None
            ),
        )
        # (b) default settings: the run stops by itself
        t = time.perf_counter()
        res = run_active_learning(
            ids,
            ThurstonianOracle(mu, sigma, np.random.default_rng(seed + 1)),
            ActiveLearningConfig(strategy=strategy, seed=seed),
        )
        out[strategy] = {
            "comparisons_to_target": hit[0] if hit else None,
            "default_run": {
                "stop_reason": res.stop_reason,
                "rounds": len(res.history) - 1,
                "comparisons": res.n_comparisons,
                "comparisons_per_item": res.n_comparisons / n,
                "held_out_comparisons": res.held_out.n_comparisons,
                "spearman_successive": res.history[-1].spearman_prev,
                "spearman_to_truth": float(spearmanr(res.fit.mu, mu)[0]),
                "held_out_accuracy": res.history[-1].held_out.accuracy,
                "seconds": time.perf_counter() - t,
            },
        }
    return out


def main() -> None:
    """Run every benchmark and write the JSON results."""
    t0 = time.perf_counter()
    results = {
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "fit_500_items": fit_timing(),
        "sparse_vs_dense_100_items": sparse_vs_dense(),
        "active_learning_500_items": [active_vs_random(seed=s) for s in (0, 1, 2)],
    }
    results["total_seconds"] = time.perf_counter() - t0
    atomic_write_json(OUT, results)
    print(f"wrote {OUT} in {results['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
