"""Reshape long ratings into an items x seeds matrix, with missing values explicit."""

from __future__ import annotations

import pandas as pd

from steerlab.errors import InputError
from steerlab.prefs._ratings import Scale, check_ratings_frame


def one_condition(ratings: pd.DataFrame, scale: Scale | None) -> pd.DataFrame:
    """Check that ``ratings`` holds a single (rater, template) condition and return it.

    Statistics across seeds only make sense within one rater and one template; slice
    first (e.g. ``ratings.groupby(["rater", "template"])``).

    Args:
        ratings: Long ratings.
        scale: The template's declared scale: a rating off its support raises InputError.
            None skips the check (for scores that are not answers on a declared scale,
            such as expected ratings from answer-token probabilities).
    """
    frame = check_ratings_frame(ratings, ("item", "seed", "value"))
    for col in ("rater", "template"):
        if col in frame.columns and frame[col].nunique(dropna=False) > 1:
            raise InputError(
                f"ratings mix several {col}s ({sorted(map(str, frame[col].unique()))[:3]}...); slice to one {col} first"
            )
    if scale is not None:
        scale.check(frame["value"].to_numpy())  # raw answers, before any averaging
    return frame


def seed_matrix(ratings: pd.DataFrame, scale: Scale | None) -> pd.DataFrame:
    """Items x seeds matrix of ratings (mean over samples; NaN if all samples missing).

    Args:
        ratings: Long ratings of one (rater, template) condition.
        scale: Declared scale to check the ratings against (see :func:`one_condition`).

    Returns:
        DataFrame indexed by item, one column per seed (sorted).
    """
    frame = one_condition(ratings, scale)
    wide = frame.pivot_table(index="item", columns="seed", values="value", aggfunc="mean", dropna=False)
    items = pd.Index(sorted(frame["item"].unique()), name="item")
    seeds = sorted(frame["seed"].unique())
    return wide.reindex(index=items, columns=seeds)
