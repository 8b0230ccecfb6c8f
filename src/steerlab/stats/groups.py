"""Per-group (e.g. per-origin) breakdowns of any statistic of a ratings frame."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from steerlab.errors import InputError


def per_group(
    ratings: pd.DataFrame, groups: Mapping[str, str], stat: Callable[[pd.DataFrame], Any], item_col: str = "item"
) -> pd.DataFrame:
    """Apply ``stat`` to the rows of each group of items and tabulate the results.

    Args:
        ratings: Long frame with an item column.
        groups: Item id -> group label (e.g. origin). Every item must have one.
        stat: Function of a sub-frame returning a number or a dataclass (its scalar fields
            become columns; non-scalar fields are left out).
        item_col: Name of the item column.

    Returns:
        One row per group (index ``group``), sorted by label.

    Example:
        >>> per_group(df, origins, lambda d: cross_seed_correlation(d, scale=scale).mean)
    """
    if item_col not in ratings.columns:
        raise InputError(f"frame has no {item_col!r} column")
    labels = ratings[item_col].map(groups)
    if labels.isna().any():
        raise InputError(f"no group label for item {ratings.loc[labels.isna(), item_col].iloc[0]!r}")
    rows = {}
    for label, part in ratings.groupby(labels, sort=True):
        result = stat(part)
        if dataclasses.is_dataclass(result):
            rows[label] = {
                f.name: getattr(result, f.name)
                for f in dataclasses.fields(result)
                if isinstance(getattr(result, f.name), (int, float, str, bool))
            }
        else:
            rows[label] = {"value": result}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "group"
    return out
