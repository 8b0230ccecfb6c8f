"""Bootstrap intervals on mu by resampling outcomes."""

import numpy as np
from scipy.stats import spearmanr

from steerlab.prefs import ThurstonianOracle, bootstrap_mu, fit_thurstonian
from steerlab.prefs.resample import resample_outcomes


def test_resampling_keeps_pairs_and_total():
    rng = np.random.default_rng(0)
    oracle = ThurstonianOracle(rng.normal(size=10), np.ones(10), rng)
    i, j = np.triu_indices(10, 1)
    data = oracle.counts(tuple(map(str, range(10))), i, j, samples=3)
    rep = resample_outcomes(data, rng)
    assert rep.n_comparisons == data.n_comparisons
    assert np.array_equal(rep.first, data.first)


def test_intervals_cover_truth_mostly():
    rng = np.random.default_rng(3)
    n = 30
    mu = rng.normal(0, 1, n)
    oracle = ThurstonianOracle(mu, np.ones(n), rng)
    i, j = np.triu_indices(n, 1)
    data = oracle.counts(tuple(map(str, range(n))), i, j, samples=4)
    fit = fit_thurstonian(data, lam=10.0)
    ci = bootstrap_mu(data, fit, n_boot=60, rng=rng, lam=10.0)
    assert (ci.lo <= fit.mu).all() and (fit.mu <= ci.hi).all()
    truth = mu - mu.mean()                                     # same location convention
    coverage = np.mean((ci.lo <= truth) & (truth <= ci.hi))
    assert coverage >= 0.8
    assert spearmanr(fit.mu, mu)[0] > 0.9
    assert list(ci.to_frame().columns) == ["id", "mu", "mu_lo", "mu_hi"]
