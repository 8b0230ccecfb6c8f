"""Active learning on a synthetic oracle: beats uniformly random pairs and stops by itself.

The 500-item version with counts is in bench/bench_prefs.py (docs/benchmarks.md).
"""

import numpy as np
from scipy.stats import spearmanr

from steerlab.prefs import ActiveLearningConfig, ThurstonianOracle, run_active_learning

N, TARGET = 150, 0.985


def _truth(seed: int = 2):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 2, N), np.exp(rng.normal(0, 0.3, N))


def _comparisons_to_reach(strategy: str, seed: int = 2) -> int | None:
    mu, sigma = _truth(seed)
    oracle = ThurstonianOracle(mu, sigma, np.random.default_rng(seed + 100))
    hit: list[int] = []

    def on_round(rec, fit):
        if not hit and spearmanr(fit.mu, mu)[0] >= TARGET:
            hit.append(rec.n_comparisons)

    cfg = ActiveLearningConfig(
        strategy=strategy,
        growth=0.25,
        threshold=1.1,  # never "converges"
        max_comparisons=40 * N,
        seed=seed,
    )
    run_active_learning(tuple(map(str, range(N))), oracle, cfg, on_round)
    return hit[0] if hit else None


def test_active_needs_fewer_comparisons_than_random():
    active, random = _comparisons_to_reach("active"), _comparisons_to_reach("random")
    print(f"comparisons to Spearman >= {TARGET} with truth: active={active} random={random}")
    assert active is not None
    assert random is None or active < random


def test_stops_by_itself_with_fixed_held_out_set():
    mu, sigma = _truth(1)
    oracle = ThurstonianOracle(mu, sigma, np.random.default_rng(7))
    res = run_active_learning(tuple(map(str, range(N))), oracle, ActiveLearningConfig(seed=1))
    assert res.stop_reason == "converged"
    assert res.history[-1].spearman_prev >= ActiveLearningConfig().threshold
    assert res.n_comparisons < 100 * N  # before the default budget
    assert res.train.n_comparisons == res.n_comparisons  # counts what was asked
    assert oracle.calls == res.n_comparisons + res.held_out.n_comparisons
    assert all(r.held_out.n_scored + r.held_out.n_ties == res.held_out.n_comparisons for r in res.history)
    train_keys = set(res.train.unordered_key().tolist())
    assert train_keys.isdisjoint(res.held_out.unordered_key().tolist())
    assert spearmanr(res.fit.mu, mu)[0] > 0.97


def test_budget_stops_the_run():
    mu, sigma = _truth(1)
    res = run_active_learning(
        tuple(map(str, range(N))),
        ThurstonianOracle(mu, sigma, np.random.default_rng(0)),
        ActiveLearningConfig(max_comparisons=600, threshold=1.1),
    )
    assert res.stop_reason == "budget" and res.n_comparisons == 600


def _small_run(budget):
    n = 60
    rng = np.random.default_rng(1)
    mu, sigma = rng.normal(0, 2, n), np.exp(rng.normal(0, 0.3, n))
    oracle = ThurstonianOracle(mu, sigma, np.random.default_rng(7))
    return run_active_learning(tuple(map(str, range(n))), oracle, ActiveLearningConfig(seed=1, max_comparisons=budget))


def test_round_cut_short_by_the_budget_is_not_convergence():
    # Regression: when the budget left room for only a sliver of the last round, the fits
    # before and after it agreed almost perfectly and the run reported "converged".
    free = _small_run(None)
    before = free.history[2].n_comparisons  # 337 after round 2
    planned = round(0.5 * before)  # the next round's size: 168
    res = _small_run(before + 3)  # budget leaves room for 3
    assert [r.n_comparisons for r in res.history[:3]] == [r.n_comparisons for r in free.history[:3]]
    assert res.history[-1].n_comparisons - before == 3 < planned
    assert res.history[-1].spearman_prev >= ActiveLearningConfig().threshold  # looked converged
    assert res.stop_reason == "budget" and res.n_comparisons == before + 3


def test_round_cut_short_by_running_out_of_pairs_is_not_convergence():
    res = _small_run(None)
    last, prev = res.history[-1].n_comparisons, res.history[-2].n_comparisons
    assert last - prev < round(0.5 * prev)  # the last round was cut short...
    pairs = set(res.train.unordered_key().tolist()) | set(res.held_out.unordered_key().tolist())
    assert len(pairs) == 60 * 59 // 2  # ...because every pair was asked
    assert res.stop_reason == "exhausted"
