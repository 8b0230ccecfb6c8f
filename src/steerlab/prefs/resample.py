"""Bootstrap intervals on Thurstonian utilities by resampling outcomes.

Each replicate redraws the parseable outcomes with replacement: the total count N is kept
and the (pair, winner) cells are drawn from a multinomial with the observed proportions.
Each replicate is refitted (warm-started from the full fit) and re-centred to mean zero
(or anchored, as the full fit was), and percentile intervals are taken per item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from steerlab.errors import InputError
from steerlab.prefs._pairs import PairCounts
from steerlab.prefs.thurstonian import ThurstonianFit, fit_thurstonian


@dataclass(frozen=True, eq=False)
class MuIntervals:
    """Percentile bootstrap intervals on mu.

    An item never compared in the data gets NaN bounds (its mu is a placeholder). With
    several connected components (``fit.graph``), intervals describe an item's place within
    its component; the offset between components is not identified.

    Attributes:
        item_ids: Item ids.
        mu: The full-data estimate.
        lo: Lower bounds, shape (n,); NaN for items never compared.
        hi: Upper bounds, shape (n,); NaN for items never compared.
        level: Coverage level (e.g. 0.95).
        n_boot: Replicates used.
    """

    item_ids: tuple[str, ...]
    mu: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    level: float
    n_boot: int

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
            raise InputError(f"bootstrap_mu: {key}={value!r} differs from the given fit's {key}={settings[key]!r}; "
                             "replicates are refitted with the fit's own settings")
    return {**fit_kwargs, **settings}


def _same(a: object, b: object) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def bootstrap_mu(
    data: PairCounts,
    fit: ThurstonianFit | None = None,
    *,
    n_boot: int = 200,
    level: float = 0.95,
    rng: np.random.Generator | None = None,
    **fit_kwargs: Any,
) -> MuIntervals:
    """Percentile intervals on mu from ``n_boot`` outcome-resampled refits.

    Every replicate is refitted with the full fit's own settings (``fit.settings()``: lam,
    bounds, anchor), so the intervals are for the quantity ``fit`` estimates.

    Args:
        data: The training counts.
        fit: The full-data fit (computed with ``fit_kwargs`` if omitted).
        n_boot: Number of replicates.
        level: Interval coverage, in (0, 1).
        rng: Random generator (default: a fresh unseeded one).
        **fit_kwargs: Passed to :func:`fit_thurstonian` (lam, bounds, anchor, max_iter).
            With ``fit`` given, a setting that differs from the fit's raises InputError.
    """
    if not 0 < level < 1 or n_boot < 2:
        raise InputError("need 0 < level < 1 and n_boot >= 2")
    rng = rng if rng is not None else np.random.default_rng()
    fit = fit if fit is not None else fit_thurstonian(data, **fit_kwargs)
    refit_kwargs = _refit_kwargs(fit, fit_kwargs)
    draws = np.empty((n_boot, data.n_items))                     # (n_boot, n)
    for b in range(n_boot):
        draws[b] = fit_thurstonian(resample_outcomes(data, rng), init=fit, **refit_kwargs).mu
    alpha = (1 - level) / 2
    lo, hi = np.quantile(draws, [alpha, 1 - alpha], axis=0)
    never = ~data.comparison_graph().compared          # no data: no interval, not a zero-width one
    lo[never], hi[never] = np.nan, np.nan
    return MuIntervals(tuple(data.item_ids), fit.mu, lo, hi, level, n_boot)
