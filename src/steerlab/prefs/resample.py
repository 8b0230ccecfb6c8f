"""Bootstrap intervals on Thurstonian utilities by resampling outcomes.

Each replicate redraws the parseable outcomes with replacement: the total count N is kept
and the (pair, winner) cells are drawn from a multinomial with the observed proportions.
Each replicate is refitted with the full fit's settings (warm-started from it) and
re-centred to mean zero (or anchored, as the full fit was). Two intervals are offered:

* ``"percentile"`` (default): the ``alpha/2`` and ``1 - alpha/2`` quantiles of each item's
  replicate mu.
* ``"debiased"``: corrects the scale stretch of the maximum-likelihood fit. The fitted mu
  come out spread wider than the truth (by 1.1-1.3x in our 100-item recoveries, more on
  very sparse designs): per-item sigma pick up spurious spread from noise while the
  penalty holds their geometric mean at 1, so sqrt(sigma_i^2 + sigma_j^2) is inflated and
  mu spreads with it; on top of that, the ML estimate of a probit model overshoots on
  finite data. Percentile intervals sit around the stretched estimate and so miss the
  truth at the extremes (about 85-90 % coverage at a nominal 95 %; docs/prefs.md).
  A replicate is the same estimator applied to data drawn from the fit, so it stretches
  the fit by about the same factor. With ``c`` the bootstrap stretch (:attr:`MuIntervals.stretch`,
  the mean slope of replicate mu on fitted mu within components), the model
  ``mu_hat = c mu + e`` and its bootstrap analogue ``mu* = c mu_hat + e*`` give

      mu ~ mu_hat / c,   interval [((1 + c) mu_hat - q_hi) / c, ((1 + c) mu_hat - q_lo) / c]

  with ``q_lo``, ``q_hi`` the percentile bounds (a basic-bootstrap interval for the
  de-stretched mu; with c = 1 it is the ordinary basic interval). ``MuIntervals.mu`` is
  then ``mu_hat / c``, not the fit's mu.

Items never compared get NaN bounds under both methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from steerlab.errors import InputError
from steerlab.prefs._pairs import ComparisonGraph, PairCounts
from steerlab.prefs.thurstonian import ThurstonianFit, fit_thurstonian

Method = Literal["percentile", "debiased"]
METHODS: tuple[str, ...] = ("percentile", "debiased")


@dataclass(frozen=True, eq=False)
class MuIntervals:
    """Bootstrap intervals on mu (see the module docstring for the two methods).

    An item never compared in the data gets NaN bounds (its mu is a placeholder). With
    several connected components (``fit.graph``), intervals describe an item's place within
    its component; the offset between components is not identified.

    Attributes:
        item_ids: Item ids.
        mu: The full-data estimate (divided by ``stretch`` for ``method="debiased"``).
        lo: Lower bounds, shape (n,); NaN for items never compared.
        hi: Upper bounds, shape (n,); NaN for items never compared.
        level: Coverage level (e.g. 0.95).
        n_boot: Replicates used.
        method: ``"percentile"`` or ``"debiased"``.
        stretch: Mean slope of replicate mu on the fit's mu, within components: how much
            the estimator widens the scale of the data it is given (1 = no stretch). NaN if
            the fitted mu have no spread.
    """

    item_ids: tuple[str, ...]
    mu: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    level: float
    n_boot: int
    method: str = "percentile"
    stretch: float = float("nan")

    def to_frame(self) -> pd.DataFrame:
        """Columns ``id``, ``mu``, ``mu_lo``, ``mu_hi``."""
        return pd.DataFrame({"id": list(self.item_ids), "mu": self.mu, "mu_lo": self.lo, "mu_hi": self.hi})


def resample_outcomes(data: PairCounts, rng: np.random.Generator) -> PairCounts:
    """One bootstrap replicate of ``data`` (same pairs, redrawn win counts)."""
    cells = np.concatenate([data.first_wins, data.second_wins]).astype(float)
    total = int(cells.sum())
    if total == 0:
        raise InputError("no parseable comparisons to resample")
    drawn = rng.multinomial(total, cells / total)
    m = data.first.size
    return data.with_counts(drawn[:m], drawn[m:])


def _refit_kwargs(fit: ThurstonianFit, fit_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The fit's settings plus any other keyword (e.g. max_iter); a conflicting setting raises."""
    settings = fit.settings()
    for key, value in fit_kwargs.items():
        if key in settings and not _same(value, settings[key]):
            raise InputError(
                f"bootstrap_mu: {key}={value!r} differs from the given fit's {key}={settings[key]!r}; "
                "replicates are refitted with the fit's own settings"
            )
    return {**fit_kwargs, **settings}


def _same(a: object, b: object) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def bootstrap_draws(
    data: PairCounts, fit: ThurstonianFit, n_boot: int, rng: np.random.Generator, **fit_kwargs: Any
) -> np.ndarray:
    """Replicate mu, shape (n_boot, n): ``data`` resampled, refitted with ``fit``'s settings.

    Args:
        data: The training counts.
        fit: The full-data fit (warm start and settings).
        n_boot: Number of replicates.
        rng: Random generator.
        **fit_kwargs: Extra :func:`fit_thurstonian` keywords (max_iter); a setting that
            differs from the fit's raises InputError.
    """
    refit_kwargs = _refit_kwargs(fit, fit_kwargs)
    draws = np.empty((n_boot, data.n_items))  # (n_boot, n)
    for b in range(n_boot):
        draws[b] = fit_thurstonian(resample_outcomes(data, rng), init=fit, **refit_kwargs).mu
    return draws


def _within_components(values: np.ndarray, component: np.ndarray) -> np.ndarray:
    """Compared items' values (last axis) minus their component's mean; shape (..., n_compared)."""
    keep = component >= 0
    v, comp = values[..., keep], component[keep]
    sizes = np.bincount(comp)
    sums = np.stack([np.bincount(comp, row, sizes.size) for row in v.reshape(-1, comp.size)])
    means = (sums / sizes).reshape(*v.shape[:-1], sizes.size)
    return v - means[..., comp]


def bootstrap_stretch(mu: np.ndarray, draws: np.ndarray, graph: ComparisonGraph) -> float:
    """Mean over replicates of the least-squares slope of replicate mu on ``mu``, with both
    centred within each connected component (offsets between components are arbitrary).

    Args:
        mu: The full fit's mu, shape (n,).
        draws: Replicate mu, shape (n_boot, n).
        graph: The data's comparison graph (never-compared items are left out).

    Returns:
        The stretch (1 = replicates keep the fit's scale); NaN if ``mu`` has no spread.
    """
    m = _within_components(mu, graph.component)  # (n_compared,)
    d = _within_components(draws, graph.component)  # (n_boot, n_compared)
    ss = float(m @ m)
    return float(np.mean(d @ m) / ss) if ss > 0 else float("nan")


def intervals_from_draws(
    data: PairCounts, mu: np.ndarray, draws: np.ndarray, level: float, method: Method = "percentile"
) -> MuIntervals:
    """Intervals on mu from replicate draws (see the module docstring for ``method``).

    Args:
        data: The training counts (for item ids and the comparison graph).
        mu: The full fit's mu, shape (n,).
        draws: Replicate mu, shape (n_boot, n).
        level: Interval coverage, in (0, 1).
        method: ``"percentile"`` or ``"debiased"``.
    """
    if method not in METHODS:
        raise InputError(f"unknown interval method {method!r}; expected one of {METHODS}")
    graph = data.comparison_graph()
    alpha = (1 - level) / 2
    q_lo, q_hi = np.quantile(draws, [alpha, 1 - alpha], axis=0)
    stretch = bootstrap_stretch(mu, draws, graph)
    centre, lo, hi = mu, q_lo, q_hi
    if method == "debiased":
        if not np.isfinite(stretch) or stretch <= 0:
            raise InputError(f"cannot de-stretch: the bootstrap stretch is {stretch} (fitted mu without spread?)")
        centre = mu / stretch
        lo, hi = ((1 + stretch) * mu - q_hi) / stretch, ((1 + stretch) * mu - q_lo) / stretch
    never = ~graph.compared  # no data: no interval, not a zero-width one
    lo, hi = np.where(never, np.nan, lo), np.where(never, np.nan, hi)
    return MuIntervals(tuple(data.item_ids), centre, lo, hi, level, int(draws.shape[0]), method, stretch)


def bootstrap_mu(
    data: PairCounts,
    fit: ThurstonianFit | None = None,
    *,
    n_boot: int = 200,
    level: float = 0.95,
    rng: np.random.Generator | None = None,
    method: Method = "percentile",
    **fit_kwargs: Any,
) -> MuIntervals:
    """Intervals on mu from ``n_boot`` outcome-resampled refits.

    Every replicate is refitted with the full fit's own settings (``fit.settings()``: lam,
    bounds, anchor), so the intervals are for the quantity ``fit`` estimates.

    Args:
        data: The training counts.
        fit: The full-data fit (computed with ``fit_kwargs`` if omitted).
        n_boot: Number of replicates.
        level: Interval coverage, in (0, 1).
        rng: Random generator (default: a fresh unseeded one).
        method: ``"percentile"`` (default) or ``"debiased"``, which divides out the scale
            stretch of the fit (module docstring); its coverage of the truth is much closer
            to ``level`` (docs/prefs.md gives the measurement).
        **fit_kwargs: Passed to :func:`fit_thurstonian` (lam, bounds, anchor, max_iter).
            With ``fit`` given, a setting that differs from the fit's raises InputError.
    """
    if not 0 < level < 1 or n_boot < 2:
        raise InputError("need 0 < level < 1 and n_boot >= 2")
    if method not in METHODS:
        raise InputError(f"unknown interval method {method!r}; expected one of {METHODS}")
    rng = rng if rng is not None else np.random.default_rng()
    fit = fit if fit is not None else fit_thurstonian(data, **fit_kwargs)
    draws = bootstrap_draws(data, fit, n_boot, rng, **fit_kwargs)
    return intervals_from_draws(data, fit.mu, draws, level, method)
