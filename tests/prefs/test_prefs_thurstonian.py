"""Thurstonian fit: exact small cases, gradient, recovery on synthetic data, the lambda penalty."""

import math
import re
from statistics import NormalDist

import numpy as np
import pytest
from scipy.stats import spearmanr

from steerlab.errors import InputError
from steerlab.prefs import (
    ActiveLearningConfig,
    PairCounts,
    ThurstonianOracle,
    evaluate_pairs,
    fit_bradley_terry,
    fit_thurstonian,
    run_active_learning,
)
from steerlab.prefs.graphs import pair_keys, random_pairs, random_regular_graph
from steerlab.prefs.synthetic import random_orientation
from steerlab.prefs.thurstonian import thurstonian_objective


def _two_items(w1: int, w2: int) -> PairCounts:
    return PairCounts(("a", "b"), np.array([0]), np.array([1]), np.array([w1]), np.array([w2]), np.array([0]))


def test_nll_matches_hand_computation():
    # mu = (0.5, -0.5), sigma = (1, 1): z = 1 / sqrt(2); 3 first wins, 1 second win.
    phi = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    z = 1 / math.sqrt(2)
    expected = -3 * math.log(phi(z)) - math.log(phi(-z)) + 0.3 * (0.0 + 0.0)
    value, _ = thurstonian_objective(np.array([0.5, -0.5, 0.0, 0.0]), _two_items(3, 1), 0.3)
    assert value == pytest.approx(expected, rel=1e-12)
    # the penalty adds lam * sum(log sigma)^2: log sigma = (0.2, -0.1) -> 0.3 * 0.05
    v2, _ = thurstonian_objective(np.array([0.0, 0.0, 0.2, -0.1]), _two_items(3, 1), 0.3)
    assert v2 == pytest.approx(-4 * math.log(0.5) + 0.3 * 0.05, rel=1e-12)


def test_two_item_fit_has_closed_form():
    # With sigma pinned at 1 (log sigma bounds ~0), the MLE solves Phi(d / sqrt 2) = 3/4.
    pinned = dict(lam=0.0, log_sigma_bounds=(-1e-12, 1e-12))
    fit = fit_thurstonian(_two_items(3, 1), **pinned)
    d = math.sqrt(2) * NormalDist().inv_cdf(0.75)
    assert fit.mu[0] - fit.mu[1] == pytest.approx(d, abs=1e-4)
    assert fit.mu.sum() == pytest.approx(0.0, abs=1e-12)  # mean-zero location
    anchored = fit_thurstonian(_two_items(3, 1), anchor="b", **pinned)
    assert anchored.mu[1] == 0.0 and anchored.mu[0] == pytest.approx(d, abs=1e-4)
    assert fit_thurstonian(_two_items(3, 1), lam=2.0).lam_per_comparison == pytest.approx(2.0 / 4)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    n, m = 12, 40
    pairs = random_pairs(n, m, rng)
    data = PairCounts(
        tuple(map(str, range(n))),
        pairs[:, 0],
        pairs[:, 1],
        rng.integers(0, 5, m),
        rng.integers(0, 5, m),
        np.zeros(m, int),
    )
    x = np.concatenate([rng.normal(size=n), rng.normal(0, 0.5, n)])
    for lam in (0.0, 0.7):
        _, grad = thurstonian_objective(x, data, lam)
        h = 1e-6
        fd = np.array(
            [
                (thurstonian_objective(x + h * e, data, lam)[0] - thurstonian_objective(x - h * e, data, lam)[0])
                / (2 * h)
                for e in np.eye(2 * n)
            ]
        )
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6)


def _synthetic(n: int, seed: int):
    rng = np.random.default_rng(seed)
    mu, sigma = rng.normal(0, 1, n), np.exp(rng.normal(0, 0.2, n))
    return rng, tuple(f"t{i}" for i in range(n)), ThurstonianOracle(mu, sigma, rng)


def test_dense_recovery_and_accuracy_close_to_oracle():
    rng, ids, oracle = _synthetic(100, 1)
    n = len(ids)
    held = random_pairs(n, 500, rng)
    i, j = np.triu_indices(n, 1)
    train = np.stack([i, j], 1)[~np.isin(pair_keys(np.stack([i, j], 1), n), pair_keys(held, n))]
    # every training pair asked once in each order: 2 * 4450 comparisons
    tr = oracle.counts(ids, np.r_[train[:, 0], train[:, 1]], np.r_[train[:, 1], train[:, 0]])
    ho = oracle.counts(ids, np.r_[held[:, 0], held[:, 1]], np.r_[held[:, 1], held[:, 0]])
    fit = fit_thurstonian(tr)
    acc, acc_oracle = evaluate_pairs(fit, ho).accuracy, evaluate_pairs(oracle, ho).accuracy
    print(f"dense: spearman={spearmanr(fit.mu, oracle.mu)[0]:.3f} acc={acc:.3f} oracle={acc_oracle:.3f}")
    assert spearmanr(fit.mu, oracle.mu)[0] >= 0.95
    assert abs(acc - acc_oracle) <= 0.02
    bt = fit_bradley_terry(tr)
    assert spearmanr(bt.scores, oracle.mu)[0] >= 0.95  # baseline agrees
    assert evaluate_pairs(bt, ho).accuracy == pytest.approx(acc, abs=0.02)


def test_sparse_d5_is_reported_and_worse_than_dense():
    rng, ids, oracle = _synthetic(100, 2)
    f, s = random_orientation(random_regular_graph(100, 5, rng), rng)
    fit = fit_thurstonian(oracle.counts(ids, f, s))
    rho = spearmanr(fit.mu, oracle.mu)[0]
    print(f"sparse d=5: spearman={rho:.3f} with {fit.n_comparisons} comparisons")
    assert 0.3 < rho < 0.95


def test_lambda_penalty_keeps_sigma_bounded():
    # Seed 004: on a sparse d=5 design, sigma blows up without the penalty. With wide
    # bounds (sigma up to e^6 = 403), lam = 0 runs to the bound; lam = 1 stays near 1.
    rng, ids, oracle = _synthetic(100, 0)
    f, s = random_orientation(random_regular_graph(100, 5, rng), rng)
    data = oracle.counts(ids, f, s)
    free = fit_thurstonian(data, lam=0.0, log_sigma_bounds=(-6, 6))
    penalised = fit_thurstonian(data, lam=1.0, log_sigma_bounds=(-6, 6))
    assert free.sigma.max() > 100
    assert penalised.sigma.max() < 10


def test_bad_input():
    with pytest.raises(InputError):
        fit_thurstonian(_two_items(0, 0))
    with pytest.raises(InputError):
        fit_thurstonian(_two_items(1, 1), lam=-1)
    with pytest.raises(InputError, match="anchor"):
        fit_thurstonian(_two_items(1, 1), anchor="zz")


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(lam=NAN), "lam must be a finite number >= 0, got nan"),
        (dict(lam=INF), "lam must be a finite number >= 0, got inf"),
        (dict(mu_bounds=(NAN, 10.0)), "mu_bounds"),
        (dict(mu_bounds=(-INF, INF)), "mu_bounds"),
        (dict(log_sigma_bounds=(-2.0, NAN)), "log_sigma_bounds"),
        (dict(log_sigma_bounds=(2.0, -2.0)), "log_sigma_bounds"),
    ],
)
def test_non_finite_settings_are_refused(kwargs, msg):
    # Regression: lam=NaN (and NaN bounds) passed every `<` check and were fitted silently.
    with pytest.raises(InputError, match=re.escape(msg)):
        fit_thurstonian(_two_items(3, 1), **kwargs)


@pytest.mark.parametrize("ridge", [NAN, INF, 0.0, -1.0])
def test_bradley_terry_ridge_must_be_finite_and_positive(ridge):
    # Regression: ridge=NaN was accepted.
    with pytest.raises(InputError, match="ridge must be a finite number > 0"):
        fit_bradley_terry(_two_items(3, 1), ridge=ridge)


@pytest.mark.parametrize("cfg", [dict(lam=NAN), dict(lam=-1.0), dict(growth=NAN), dict(threshold=NAN)])
def test_active_learning_refuses_bad_settings_before_asking(cfg):
    oracle = ThurstonianOracle(np.zeros(12), np.ones(12), np.random.default_rng(0))
    with pytest.raises(InputError):
        run_active_learning(tuple(map(str, range(12))), oracle, ActiveLearningConfig(**cfg))
    assert oracle.calls == 0  # no model time spent on a run that cannot fit


def test_fractional_counts_fit_equals_by_hand_likelihood():
    """One-pass choices as fractional counts: the fit maximises
    Σ w₁ log Φ(z) + w₂ log Φ(−z) − λ Σ s² written out by hand (NormalDist, Nelder–Mead from another start)."""
    from scipy.optimize import minimize

    p_first = {(0, 1): 0.83, (1, 0): 0.41, (1, 2): 0.64, (2, 1): 0.52, (0, 2): 0.91, (2, 0): 0.12}
    first = np.array([a for a, _ in p_first])
    second = np.array([b for _, b in p_first])
    w1 = np.array(list(p_first.values()))
    data = PairCounts(("a", "b", "c"), first, second, w1, 1 - w1, np.zeros(6), fractional=True)
    assert data.n_comparisons == 6 and data.merged().first_wins.dtype.kind == "f"
    lam = 1.0
    phi = NormalDist().cdf

    def by_hand(x):
        mu, s = x[:3], x[3:]
        total = 0.0
        for (a, b), p in p_first.items():
            z = (mu[a] - mu[b]) / math.sqrt(math.exp(2 * s[a]) + math.exp(2 * s[b]))
            total -= p * math.log(phi(z)) + (1 - p) * math.log(phi(-z))
        return total + lam * sum(v * v for v in s)

    fit = fit_thurstonian(data, lam=lam)
    ref = minimize(
        by_hand,
        np.array([0.3, -0.2, 0.1, 0.2, -0.1, 0.0]),
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 40000, "maxfev": 40000},
    )
    mu_ref = ref.x[:3] - ref.x[:3].mean()
    assert fit.mu == pytest.approx(mu_ref, abs=1e-4)
    assert fit.sigma == pytest.approx(np.exp(ref.x[3:]), abs=1e-4)
    assert fit.nll == pytest.approx(
        by_hand(np.concatenate([fit.mu, np.log(fit.sigma)])) - lam * np.log(fit.sigma) @ np.log(fit.sigma)
    )


def test_whole_number_counts_still_reject_fractions():
    with pytest.raises(InputError, match="whole numbers"):
        PairCounts(("a", "b"), np.array([0]), np.array([1]), np.array([0.4]), np.array([0.6]), np.array([0]))
