"""Ratings: one row per (item, rater, template, seed, sample), value or missing.

The long DataFrame form (columns :data:`RATING_COLUMNS`, ``value`` NaN when the answer
could not be parsed) is what every function in :mod:`steerlab.stats` takes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from steerlab.errors import InputError

RATING_COLUMNS = ("item", "rater", "template", "seed", "sample", "value")


@dataclass(frozen=True)
class Rating:
    """One rating.

    Attributes:
        item: Id of the rated item.
        rater: The model (or person) giving the rating.
        template: Name of the rating template (prompt + scale).
        seed: Sampling seed of the run.
        sample: Index of the sample within the seed (0 if one sample).
        value: The parsed rating, or None when the answer was unparseable/missing.
    """

    item: str
    rater: str
    template: str
    seed: int
    sample: int = 0
    value: float | None = None


@dataclass(frozen=True)
class Scale:
    """The support a rating template DECLARES, e.g. 1..5 or -5..+5.

    Attributes:
        values: The allowed values, sorted ascending, no duplicates.
        name: Optional label (usually the template name).
    """

    values: tuple[float, ...]
    name: str = ""

    def __post_init__(self) -> None:
        vals = tuple(float(v) for v in self.values)
        if len(vals) < 2:
            raise InputError(f"scale {self.name!r} needs at least two values")
        if any(b <= a for a, b in zip(vals, vals[1:])):
            raise InputError(f"scale {self.name!r}: values must be strictly increasing")
        object.__setattr__(self, "values", vals)

    @classmethod
    def integer_range(cls, lo: int, hi: int, name: str = "") -> Scale:
        """The integers ``lo..hi`` inclusive (e.g. ``Scale.integer_range(1, 5)``)."""
        return cls(tuple(range(lo, hi + 1)), name)

    @property
    def k(self) -> int:
        """Number of declared values."""
        return len(self.values)

    @property
    def lo(self) -> float:
        """Smallest declared value."""
        return self.values[0]

    @property
    def hi(self) -> float:
        """Largest declared value."""
        return self.values[-1]

    def check(self, values: np.ndarray) -> None:
        """Raise InputError if a non-missing value is not on the declared support."""
        v = np.asarray(values, dtype=float)
        v = v[~np.isnan(v)]
        bad = ~np.isin(v, np.asarray(self.values))
        if bad.any():
            raise InputError(
                f"rating {v[bad][0]:g} is outside the declared support of scale "
                f"{self.name!r} ({self.lo:g}..{self.hi:g}, {self.k} values)"
            )


def ratings_to_frame(ratings: Iterable[Rating]) -> pd.DataFrame:
    """Ratings as the long DataFrame (missing values become NaN).

    Args:
        ratings: The ratings.
    """
    rows = [
        (r.item, r.rater, r.template, r.seed, r.sample, np.nan if r.value is None else float(r.value)) for r in ratings
    ]
    return pd.DataFrame(rows, columns=list(RATING_COLUMNS)).astype({"value": float})


def ratings_from_frame(frame: pd.DataFrame) -> list[Rating]:
    """Inverse of :func:`ratings_to_frame`.

    Args:
        frame: The long DataFrame.
    """
    frame = check_ratings_frame(frame)
    return [
        Rating(str(i), str(r), str(t), int(s), int(n), None if np.isnan(v) else float(v))
        for i, r, t, s, n, v in frame[list(RATING_COLUMNS)].itertuples(index=False)
    ]


def check_ratings_frame(frame: pd.DataFrame, required: Sequence[str] = RATING_COLUMNS) -> pd.DataFrame:
    """Check the columns and types of a ratings frame; returns it with a float ``value``.

    Args:
        frame: The long DataFrame.
        required: Columns that must be present.
    """
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(f"ratings frame is missing columns {missing}")
    try:
        values = pd.to_numeric(frame["value"], errors="raise").astype(float)
    except (ValueError, TypeError) as e:
        raise InputError(f"ratings frame: non-numeric value ({e})") from None
    if np.isinf(values).any():
        raise InputError("ratings frame: infinite value")
    return frame.assign(value=values)
