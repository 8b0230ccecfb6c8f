"""Bradley-Terry (logit) scores: the baseline beside the Thurstonian fit.

P(i chosen over j) = 1 / (1 + exp(-(beta_i - beta_j))). A small ridge penalty
``ridge * sum(beta^2)`` keeps scores finite when an item wins (or loses) every comparison
and pins the location; scores are reported shifted to mean zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from steerlab.errors import InputError
from steerlab.prefs._pairs import ComparisonGraph, PairCounts, graph_columns
from steerlab.prefs._threads import single_threaded_blas

DEFAULT_RIDGE = 1e-3


def bradley_terry_objective(beta: np.ndarray, data: PairCounts, ridge: float) -> tuple[float, np.ndarray]:
    """Penalised NLL and gradient for scores ``beta`` (shape (n,))."""
    d = beta[data.first] - beta[data.second]
    wa, wb = data.first_wins, data.second_wins
    nll = -(wa @ log_expit(d) + wb @ log_expit(-d))
    dd = -wa * expit(-d) + wb * expit(d)
    n = data.n_items
    grad = np.bincount(data.first, dd, n) - np.bincount(data.second, dd, n)
    return float(nll + ridge * beta @ beta), grad + 2 * ridge * beta


@dataclass(frozen=True, eq=False)
class BradleyTerryFit:
    """Result of :func:`fit_bradley_terry`.

    Attributes:
        item_ids: Item ids aligned with ``scores``.
        scores: Mean-zero log-strengths, shape (n,).
        nll: Unpenalised NLL of the training counts.
        converged: Whether L-BFGS-B reported success.
        graph: Comparisons per item and connected components of the training data (an item
            never compared gets score 0 from the ridge alone; scores in different components
            are not comparable). See :attr:`warnings`.
    """

    item_ids: tuple[str, ...]
    scores: np.ndarray
    nll: float
    converged: bool
    graph: ComparisonGraph | None = None

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the training data leave unidentified: never-compared items, several components."""
        return self.graph.warnings(self.item_ids) if self.graph is not None else ()

    def prob_first_wins(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Model probability that ``first[k]`` is chosen over ``second[k]``."""
        return expit(self.scores[first] - self.scores[second])

    def to_frame(self) -> pd.DataFrame:
        """One row per item: ``id``, ``score``, and (from :attr:`graph`) ``n_comparisons`` and
        ``component`` (-1: never compared)."""
        return pd.DataFrame({"id": list(self.item_ids), "score": self.scores, **graph_columns(self.graph)})


def fit_bradley_terry(data: PairCounts, *, ridge: float = DEFAULT_RIDGE) -> BradleyTerryFit:
    """Fit Bradley-Terry scores by penalised maximum likelihood.

    Args:
        data: Pair counts (unparseable answers ignored).
        ridge: Weight of ``sum(beta^2)``; finite and > 0 so scores stay finite.
    """
    if not np.isfinite(ridge) or ridge <= 0:
        raise InputError(f"ridge must be a finite number > 0, got {ridge}")
    if data.n_comparisons == 0:
        raise InputError("no parseable comparisons to fit")
    with single_threaded_blas():
        res = minimize(bradley_terry_objective, np.zeros(data.n_items), args=(data, ridge), jac=True, method="L-BFGS-B")
    beta = res.x - res.x.mean()
    nll = bradley_terry_objective(beta, data, 0.0)[0]
    return BradleyTerryFit(tuple(data.item_ids), beta, nll, bool(res.success), data.comparison_graph())
