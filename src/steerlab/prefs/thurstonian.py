"""Thurstonian (probit) utilities from pairwise counts.

Model: item i has utility mu_i and noise sigma_i, and

    P(i chosen over j) = Phi((mu_i - mu_j) / sqrt(sigma_i^2 + sigma_j^2)).

The fit minimises, over mu and s = log(sigma),

    NLL(mu, s) + lam * sum_i s_i^2

with L-BFGS-B and an analytic, vectorised gradient (one pass over the pair arrays, no
Python loop). Position is ignored by the model: a row's first-shown and second-shown wins
count for those items whatever the order (use :mod:`steerlab.prefs.position` to study order).

Identification and defaults (documented choices):
  * Location: the likelihood is unchanged by adding a constant to every mu. By default the
    fitted mu are shifted to mean zero after optimisation (the NLL is exactly unchanged);
    with ``anchor=<item id>`` that item's mu is held at 0 instead.
  * Scale: multiplying every mu and sigma by c > 0 also leaves the NLL unchanged. The
    penalty lam * sum(log sigma)^2 pulls sigma toward 1 and so fixes the scale; with
    ``lam=0`` only the bounds do, and sparse data lets sigma run to the bound (seed 004).
  * Bounds: log sigma in (-2, 2), i.e. sigma in (0.135, 7.39) (seed 004's default), and
    mu in (-10, 10) so an item that wins every comparison stays finite.
  * Connectivity: only differences within a connected component of the comparison graph
    are identified, and an item never compared is not identified at all (it keeps its
    starting value). ``fit.graph`` and ``fit.warnings`` report both; nothing is imputed.
  * Penalty: ``lam=1.0`` by default (seed 004: 1-10 controls sigma blow-up on sparse or
    real data; it is harmless on dense data). The fit also reports lam per comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import log_ndtr, ndtr

from steerlab.errors import InputError
from steerlab.prefs._pairs import ComparisonGraph, PairCounts, graph_columns
from steerlab.prefs._threads import single_threaded_blas

DEFAULT_LAMBDA = 1.0
DEFAULT_MU_BOUNDS = (-10.0, 10.0)
DEFAULT_LOG_SIGMA_BOUNDS = (-2.0, 2.0)
_LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)


def _mills(z: np.ndarray) -> np.ndarray:
    """phi(z) / Phi(z), computed in log space so it stays finite for very negative z."""
    return np.exp(-0.5 * z * z - _LOG_SQRT_2PI - log_ndtr(z))


def thurstonian_objective(params: np.ndarray, data: PairCounts, lam: float) -> tuple[float, np.ndarray]:
    """Penalised NLL and its gradient.

    Args:
        params: ``concat([mu, log_sigma])``, shape (2n,).
        data: Pair counts over n items.
        lam: Penalty weight on sum(log sigma)^2.

    Returns:
        (value, gradient of shape (2n,)).
    """
    n = data.n_items
    mu, s = params[:n], params[n:]
    a, b = data.first, data.second  # (m,)
    wa, wb = data.first_wins, data.second_wins  # (m,)
    var_a, var_b = np.exp(2 * s[a]), np.exp(2 * s[b])
    v = var_a + var_b
    sd = np.sqrt(v)
    z = (mu[a] - mu[b]) / sd
    nll = -(wa @ log_ndtr(z) + wb @ log_ndtr(-z))
    dz = -(wa * _mills(z) - wb * _mills(-z))  # dNLL/dz, (m,)
    g_mu = np.bincount(a, dz / sd, n) - np.bincount(b, dz / sd, n)
    dz_dv = dz * (-0.5 * z / v)  # dNLL/dv
    g_s = np.bincount(a, dz_dv * 2 * var_a, n) + np.bincount(b, dz_dv * 2 * var_b, n)
    value = float(nll + lam * s @ s)
    return value, np.concatenate([g_mu, g_s + 2 * lam * s])


def check_settings(
    lam: float,
    mu_bounds: tuple[float, float] = DEFAULT_MU_BOUNDS,
    log_sigma_bounds: tuple[float, float] = DEFAULT_LOG_SIGMA_BOUNDS,
) -> None:
    """Raise InputError unless ``lam`` is a finite number >= 0 and each bound pair is two
    finite numbers with low < high (NaN would otherwise pass every comparison silently)."""
    if not np.isfinite(lam) or lam < 0:
        raise InputError(f"lam must be a finite number >= 0, got {lam}")
    for name, (low, high) in (("mu_bounds", mu_bounds), ("log_sigma_bounds", log_sigma_bounds)):
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise InputError(f"{name} must be (low, high), finite with low < high, got {(low, high)}")


@dataclass(frozen=True, eq=False)
class ThurstonianFit:
    """Result of :func:`fit_thurstonian`.

    Attributes:
        item_ids: Item ids, aligned with ``mu`` and ``sigma``.
        mu: Utilities, shape (n,).
        sigma: Noise scales, shape (n,).
        nll: Unpenalised negative log-likelihood of the training counts.
        lam: Penalty weight used.
        lam_per_comparison: ``lam`` divided by the number of training comparisons.
        n_comparisons: Parseable training comparisons.
        converged: Whether L-BFGS-B reported success.
        n_iter: L-BFGS-B iterations.
        anchor: Item held at mu = 0, or None for mean-zero mu.
        mu_bounds: Box bounds on mu used by the fit.
        log_sigma_bounds: Box bounds on log sigma used by the fit.
        graph: Comparisons per item and connected components of the training data. An item
            never compared keeps the starting value (0 before centring), which the data do
            not inform; utilities in different components are not comparable. See
            :attr:`warnings`.
    """

    item_ids: tuple[str, ...]
    mu: np.ndarray
    sigma: np.ndarray
    nll: float
    lam: float
    lam_per_comparison: float
    n_comparisons: int
    converged: bool
    n_iter: int
    anchor: str | None = None
    mu_bounds: tuple[float, float] = DEFAULT_MU_BOUNDS
    log_sigma_bounds: tuple[float, float] = DEFAULT_LOG_SIGMA_BOUNDS
    graph: ComparisonGraph | None = None

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the training data leave unidentified: never-compared items, several components."""
        return self.graph.warnings(self.item_ids) if self.graph is not None else ()

    def settings(self) -> dict[str, Any]:
        """The :func:`fit_thurstonian` keyword arguments that define this fit's model:
        ``lam``, ``mu_bounds``, ``log_sigma_bounds`` and ``anchor`` (refits such as the
        bootstrap's use them, so replicates estimate the same quantity)."""
        return {
            "lam": self.lam,
            "mu_bounds": self.mu_bounds,
            "log_sigma_bounds": self.log_sigma_bounds,
            "anchor": self.anchor,
        }

    def prob_first_wins(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Model probability that ``first[k]`` is chosen over ``second[k]`` (indices)."""
        sd = np.sqrt(self.sigma[first] ** 2 + self.sigma[second] ** 2)
        return ndtr((self.mu[first] - self.mu[second]) / sd)

    def to_frame(self) -> pd.DataFrame:
        """One row per item: ``id``, ``mu``, ``sigma``, and (from :attr:`graph`)
        ``n_comparisons`` and ``component`` (-1: never compared)."""
        return pd.DataFrame(
            {"id": list(self.item_ids), "mu": self.mu, "sigma": self.sigma, **graph_columns(self.graph)}
        )


def fit_thurstonian(
    data: PairCounts,
    *,
    lam: float = DEFAULT_LAMBDA,
    mu_bounds: tuple[float, float] = DEFAULT_MU_BOUNDS,
    log_sigma_bounds: tuple[float, float] = DEFAULT_LOG_SIGMA_BOUNDS,
    anchor: str | None = None,
    init: ThurstonianFit | None = None,
    max_iter: int = 2000,
) -> ThurstonianFit:
    """Fit mu and sigma per item by penalised maximum likelihood (see module docstring).

    Args:
        data: Pair counts; unparseable answers are ignored.
        lam: Penalty weight on sum(log sigma)^2 (finite, >= 0).
        mu_bounds: Box bounds on each mu during optimisation (finite, low < high).
        log_sigma_bounds: Box bounds on each log sigma (finite, low < high).
        anchor: Item id whose mu is fixed at 0; None means mean-zero mu.
        init: A previous fit on the same items to warm-start from.
        max_iter: L-BFGS-B iteration limit.

    Example:
        >>> fit = fit_thurstonian(counts, lam=1.0)
        >>> fit.to_frame().sort_values("mu")
    """
    n = data.n_items
    check_settings(lam, mu_bounds, log_sigma_bounds)
    if data.n_comparisons == 0:
        raise InputError("no parseable comparisons to fit")
    bounds = [mu_bounds] * n + [log_sigma_bounds] * n
    x0 = np.zeros(2 * n)
    if init is not None:
        if tuple(init.item_ids) != tuple(data.item_ids):
            raise InputError("init fit is over a different item list")
        x0 = np.concatenate([init.mu, np.log(init.sigma)])
    x0 = np.clip(x0, [b[0] for b in bounds], [b[1] for b in bounds])
    if anchor is not None:
        if anchor not in data.item_ids:
            raise InputError(f"anchor {anchor!r} is not an item id")
        k = data.item_ids.index(anchor)
        x0[:n] -= x0[k]
        x0[:n] = np.clip(x0[:n], *mu_bounds)
        bounds[k] = (0.0, 0.0)
    with single_threaded_blas():
        res = minimize(
            thurstonian_objective,
            x0,
            args=(data, lam),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": max_iter, "maxfun": 2 * max_iter},
        )
    mu, s = res.x[:n].copy(), res.x[n:].copy()
    if anchor is None:
        mu -= mu.mean()
    nll = thurstonian_objective(np.concatenate([mu, s]), data, 0.0)[0]
    return ThurstonianFit(
        tuple(data.item_ids),
        mu,
        np.exp(s),
        nll,
        lam,
        lam / data.n_comparisons,
        data.n_comparisons,
        bool(res.success),
        int(res.nit),
        anchor,
        (float(mu_bounds[0]), float(mu_bounds[1])),
        (float(log_sigma_bounds[0]), float(log_sigma_bounds[1])),
        data.comparison_graph(),
    )
