"""Does a rater discriminate between items, or give everything the same rating?

The mode is the most common non-missing value of the condition (ties: the smallest value).
  * response discrimination rate: share of non-missing ratings that differ from the mode;
  * item discrimination rate: share of items with at least one non-modal rating (any seed
    or sample) -- the "d" of seed 004 (gemma-3-27b rated 91% of tasks 4: d = 9%);
  * informative correlation: cross-seed correlation restricted to those items, so that a
    rater that agrees with itself only by always saying "4" does not look reliable.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from steerlab.errors import InputError
from steerlab.prefs._ratings import Scale
from steerlab.stats._matrix import one_condition, seed_matrix
from steerlab.stats.correlation import CrossSeedCorrelation, Method, correlation_over_seed_pairs


@dataclass(frozen=True)
class Discrimination:
    """Result of :func:`discrimination`.

    Attributes:
        mode: Most common rating.
        response_rate: Non-modal ratings / non-missing ratings.
        item_rate: Items with a non-modal rating / items with a non-missing rating.
        n_responses: Non-missing ratings.
        n_items: Items with at least one non-missing rating.
        n_missing: Missing ratings ignored.
    """

    mode: float
    response_rate: float
    item_rate: float
    n_responses: int
    n_items: int
    n_missing: int


def discrimination(ratings: pd.DataFrame, *, scale: Scale | None) -> Discrimination:
    """Discrimination rates of one (rater, template) condition (see module docstring).

    Args:
        ratings: Long ratings (columns item, seed, value).
        scale: The template's declared scale (required): a rating off it raises InputError.
            Pass None explicitly only for scores that are not answers on a declared scale.
    """
    frame = one_condition(ratings, scale)
    valid = frame.dropna(subset=["value"])
    if valid.empty:
        raise InputError("no non-missing ratings")
    counts = valid["value"].value_counts()
    mode = float(min(counts.index[counts == counts.max()]))
    off = valid["value"] != mode
    per_item = off.groupby(valid["item"]).any()
    return Discrimination(
        mode,
        float(off.mean()),
        float(per_item.mean()),
        int(len(valid)),
        int(per_item.size),
        int(len(frame) - len(valid)),
    )


def informative_items(ratings: pd.DataFrame, scale: Scale | None) -> list[object]:
    """Items with at least one non-modal rating in this condition."""
    frame = one_condition(ratings, scale).dropna(subset=["value"])
    mode = discrimination(frame, scale=None).mode  # already checked
    off = (frame["value"] != mode).groupby(frame["item"]).any()
    return sorted(off.index[off])


def informative_correlation(
    ratings: pd.DataFrame, method: Method = "pearson", min_items: int = 3, *, scale: Scale | None
) -> CrossSeedCorrelation:
    """Cross-seed correlation over informative (non-modal) items only.

    Args:
        ratings: Long ratings of one (rater, template) condition.
        method: ``"pearson"`` or ``"spearman"``.
        min_items: Fewest shared items for a seed pair to count.
        scale: The template's declared scale (required): a rating off it raises InputError.
            Pass None explicitly only for scores that are not answers on a declared scale.
    """
    matrix = seed_matrix(ratings, scale)
    keep = matrix.index.isin(informative_items(ratings, None))  # already checked
    return correlation_over_seed_pairs(matrix.loc[keep], method, min_items)
