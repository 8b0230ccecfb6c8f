"""Held-out evaluation of any pairwise model: accuracy (ties excluded, counted) and NLL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from steerlab.errors import InputError
from steerlab.prefs._pairs import PairCounts

_EPS = 1e-12


class PairModel(Protocol):
    """Anything that predicts P(first-shown item chosen) from item index arrays.

    Models that also have an ``item_ids`` attribute (the fits) are aligned to held-out data
    by id in :func:`evaluate_pairs`.
    """

    def prob_first_wins(self, first: np.ndarray, second: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class PairMetrics:
    """Held-out scores of a pairwise model.

    Attributes:
        accuracy: Correct / scored; a comparison whose predicted probability is exactly 0.5
            is a tie: neither right nor wrong, excluded from ``n_scored`` (NaN if none scored).
        n_correct: Comparisons whose chosen item had predicted probability > 0.5.
        n_scored: Comparisons with a prediction other than exactly 0.5.
        n_ties: Comparisons with a predicted probability of exactly 0.5.
        nll: Mean negative log-likelihood per comparison (all comparisons).
    """

    accuracy: float
    n_correct: int
    n_scored: int
    n_ties: int
    nll: float


def score_probabilities(p_first: np.ndarray, data: PairCounts) -> PairMetrics:
    """Score predicted P(first chosen) for each row of ``data``.

    Args:
        p_first: Probabilities, shape (m,), aligned with the rows of ``data``.
        data: Held-out counts (unparseable answers ignored).
    """
    p = np.asarray(p_first, dtype=float)
    if p.shape != data.first.shape:
        raise InputError(f"{p.shape[0] if p.ndim else 0} probabilities for {data.first.size} pairs")
    wa, wb = data.first_wins, data.second_wins
    total = float(wa.sum() + wb.sum())  # fractional counts: weights, so sums stay real until the end
    if total == 0:
        raise InputError("no parseable held-out comparisons")
    correct = float(wa[p > 0.5].sum() + wb[p < 0.5].sum())
    ties = float((wa + wb)[p == 0.5].sum())
    scored = total - ties
    pc = np.clip(p, _EPS, 1 - _EPS)
    nll = -(wa @ np.log(pc) + wb @ np.log1p(-pc)) / total
    accuracy = correct / scored if scored else float("nan")
    return PairMetrics(accuracy, round(correct), round(scored), round(ties), float(nll))


def evaluate_pairs(model: PairModel, data: PairCounts) -> PairMetrics:
    """Held-out accuracy and NLL of ``model`` on ``data``.

    A model with ``item_ids`` (every fit) is matched to the held-out pairs **by item id**:
    the held-out counts may be built on another item list (another order, a subset, extra
    items no pair uses), but every item a held-out pair names must be one the model knows.
    A model without ``item_ids`` (e.g. :class:`~steerlab.prefs.ThurstonianOracle`) is
    index-based: ``data`` must use the model's item order.

    Args:
        model: A fitted model (Thurstonian, Bradley-Terry, or a true-parameter oracle).
        data: Held-out counts.

    Raises:
        InputError: A held-out pair names an item the model has no utility for.
    """
    ids = getattr(model, "item_ids", None)
    if ids is not None:
        try:
            data = data.over_items(ids)
        except InputError as e:
            raise InputError(f"held-out pairs do not match the model's items: {e}") from None
    try:
        p = model.prob_first_wins(data.first, data.second)
    except IndexError:
        raise InputError(
            f"held-out pairs index {data.n_items} items, more than the model predicts for; "
            "build them on the model's item list"
        ) from None
    return score_probabilities(p, data)
