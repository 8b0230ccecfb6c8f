"""Pairwise outcomes stored as counts per *ordered* pair, so position is never lost.

A row ``(first, second, first_wins, second_wins, unparseable)`` says: item ``first`` was
shown in the first position and ``second`` in the second; the judge chose the first
``first_wins`` times, the second ``second_wins`` times, and gave an unusable answer
``unparseable`` times. The same two items asked in the other order form a separate row.

Counts are whole numbers, unless the counts are *fractional* (``fractional=True``): then a
row's wins may be any non-negative reals, e.g. one choice read from one scoring pass counts
as ``P(first)`` wins for the first-shown item and ``1 − P(first)`` for the second (weight 1
per asked order), and the Thurstonian likelihood ``Σ w₁ log Φ(z) + w₂ log Φ(−z)`` is the
same formula with those weights. No sample is made up: nothing is rounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from steerlab.errors import InputError
from steerlab.prefs._items import check_unique_ids

COLUMNS = ("first", "second", "first_wins", "second_wins", "unparseable")


@dataclass(frozen=True)
class PairOutcome:
    """Counts for one ordered pair, by item id (see the module docstring)."""

    first: str
    second: str
    first_wins: int = 0
    second_wins: int = 0
    unparseable: int = 0


def _int_array(x: object, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise InputError(f"{name}: expected a 1-d array, got shape {arr.shape}")
    if arr.size and not np.all(np.isfinite(arr.astype(float))):
        raise InputError(f"{name}: contains NaN or infinite values")
    as_int = arr.astype(np.int64)
    if arr.size and not np.array_equal(as_int, arr):
        raise InputError(f"{name}: counts and indices must be whole numbers")
    return as_int


def _count_array(x: object, name: str, fractional: bool) -> np.ndarray:
    """Whole-number counts, or (``fractional``) finite float weights."""
    if not fractional:
        return _int_array(x, name)
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise InputError(f"{name}: expected a 1-d array, got shape {arr.shape}")
    if arr.size and not np.all(np.isfinite(arr)):
        raise InputError(f"{name}: contains NaN or infinite values")
    return arr


def _check_ids_present(frame: pd.DataFrame) -> None:
    """Raise InputError naming the first row whose ``first`` or ``second`` id is missing.

    A missing id (None, NaN, pd.NA) would otherwise become the string ``"None"`` or
    ``"nan"``, or break sorting of the ids with a bare TypeError.
    """
    for col in ("first", "second"):
        absent = frame[col].isna().to_numpy()
        if absent.any():
            pos = int(np.flatnonzero(absent)[0])
            label = frame.index[pos : pos + 1].tolist()[0]  # a plain Python value
            raise InputError(
                f"pair frame row {pos} (index {label!r}): missing item id in column {col!r} "
                f"({int(absent.sum())} such row(s))"
            )


@dataclass(frozen=True, eq=False)
class ComparisonGraph:
    """Which items the data compare, and which groups of items are linked by comparisons.

    Items are nodes; two items are joined when at least one parseable answer compared them.
    Utilities are identified only **within** a connected component: the data say nothing
    about how one component's utilities sit relative to another's, and nothing about an item
    that was never compared.

    Attributes:
        comparisons_per_item: Parseable comparisons each item took part in, shape (n,).
        component: Component label per item, shape (n,): 0 for the largest component, 1 for
            the next (ties: the one holding the lowest item index first), ...; -1 for an item
            never compared.
    """

    comparisons_per_item: np.ndarray
    component: np.ndarray

    @property
    def compared(self) -> np.ndarray:
        """Boolean mask of items with at least one parseable comparison, shape (n,)."""
        return self.comparisons_per_item > 0

    @property
    def n_components(self) -> int:
        """Connected components among compared items (1 means every compared item is linked)."""
        return int(self.component.max()) + 1 if self.component.size else 0

    def warnings(self, item_ids: Sequence[str]) -> tuple[str, ...]:
        """Plain-language notes on what the data cannot identify (empty when all is well)."""
        notes = []
        never = [item_ids[int(i)] for i in np.flatnonzero(~self.compared)]
        if never:
            notes.append(
                f"{len(never)} item(s) never compared, e.g. {never[:3]}: their utility is a "
                "placeholder (the fit's starting value) that the data do not inform"
            )
        if self.n_components > 1:
            sizes = np.bincount(self.component[self.component >= 0]).tolist()
            notes.append(
                f"the comparison graph has {self.n_components} connected components (sizes "
                f"{sizes[:5]}{'...' if len(sizes) > 5 else ''}): utilities are comparable only within "
                "a component; the offset between components is not identified by the data"
            )
        return tuple(notes)


def graph_columns(graph: ComparisonGraph | None) -> dict[str, np.ndarray]:
    """``n_comparisons`` and ``component`` columns for a fit's per-item frame ({} if unknown)."""
    if graph is None:
        return {}
    return {"n_comparisons": graph.comparisons_per_item, "component": graph.component}


@dataclass(frozen=True, eq=False)
class PairCounts:
    """All pairwise outcomes of one experiment, as parallel arrays (shape (m,)).

    Attributes:
        item_ids: Item ids; ``first``/``second`` index into this tuple.
        first: Index of the item shown first.
        second: Index of the item shown second.
        first_wins: Times the first-shown item was chosen.
        second_wins: Times the second-shown item was chosen.
        unparseable: Answers that named neither item.
        fractional: Counts are non-negative real weights (floats) instead of whole numbers
            (see the module docstring); every derived table keeps them so.
    """

    item_ids: tuple[str, ...]
    first: np.ndarray
    second: np.ndarray
    first_wins: np.ndarray
    second_wins: np.ndarray
    unparseable: np.ndarray
    fractional: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        check_unique_ids(self.item_ids)
        arrays = {
            c: _int_array(getattr(self, c), c) if i < 2 else _count_array(getattr(self, c), c, self.fractional)
            for i, c in enumerate(COLUMNS)
        }
        sizes = {a.size for a in arrays.values()}
        if len(sizes) > 1:
            raise InputError(f"pair arrays have different lengths: { {c: a.size for c, a in arrays.items()} }")
        n = len(self.item_ids)
        for c in ("first", "second"):
            bad = (arrays[c] < 0) | (arrays[c] >= n)
            if bad.any():
                raise InputError(f"{c}: index {arrays[c][bad][0]} out of range for {n} items")
        if np.any(arrays["first"] == arrays["second"]):
            raise InputError("a pair compares an item with itself")
        for c in COLUMNS[2:]:
            if np.any(arrays[c] < 0):
                raise InputError(f"{c}: negative count {arrays[c].min()}")
        for c, a in arrays.items():
            a.setflags(write=False)
            object.__setattr__(self, c, a)

    @property
    def n_items(self) -> int:
        """Number of items."""
        return len(self.item_ids)

    @property
    def n_comparisons(self) -> int:
        """Number of parseable comparisons (wins of either side; fractional: the total weight, rounded)."""
        return int(np.rint(self.first_wins.sum() + self.second_wins.sum()))

    def comparison_graph(self) -> ComparisonGraph:
        """Comparisons per item and connected components (see :class:`ComparisonGraph`)."""
        n = self.n_items
        w = (self.first_wins + self.second_wins).astype(float)
        per_item = np.rint(np.bincount(self.first, w, n) + np.bincount(self.second, w, n)).astype(np.int64)
        used = w > 0
        adjacency = coo_matrix((np.ones(int(used.sum())), (self.first[used], self.second[used])), shape=(n, n))
        _, raw = connected_components(adjacency, directed=False)  # arbitrary labels, (n,)
        members = np.flatnonzero(per_item > 0)
        labels, where, inverse, sizes = np.unique(
            raw[members], return_index=True, return_inverse=True, return_counts=True
        )
        rank = np.empty(labels.size, dtype=np.int64)
        rank[np.lexsort((members[where], -sizes))] = np.arange(labels.size)  # largest first
        component = np.full(n, -1, dtype=np.int64)
        component[members] = rank[inverse]
        return ComparisonGraph(per_item, component)

    def unordered_key(self) -> np.ndarray:
        """One integer per row identifying the unordered pair {first, second}."""
        lo = np.minimum(self.first, self.second)
        hi = np.maximum(self.first, self.second)
        return lo * self.n_items + hi

    def select(self, mask: np.ndarray) -> PairCounts:
        """Rows where ``mask`` is true (or the given row indices)."""
        return PairCounts(self.item_ids, *(getattr(self, c)[mask] for c in COLUMNS), fractional=self.fractional)

    def with_counts(self, first_wins: np.ndarray, second_wins: np.ndarray) -> PairCounts:
        """Same pairs with new win counts (unparseable set to zero); used by resampling."""
        zeros = np.zeros_like(self.first)
        return PairCounts(
            self.item_ids, self.first, self.second, first_wins, second_wins, zeros, fractional=self.fractional
        )

    def concat(self, other: PairCounts) -> PairCounts:
        """Rows of ``self`` followed by rows of ``other`` (same items required)."""
        if tuple(other.item_ids) != tuple(self.item_ids):
            raise InputError("cannot concatenate pair counts over different item lists")
        if other.fractional != self.fractional:
            raise InputError("cannot concatenate fractional and whole-number pair counts")
        cols = (np.concatenate([getattr(self, c), getattr(other, c)]) for c in COLUMNS)
        return PairCounts(self.item_ids, *cols, fractional=self.fractional)

    def over_items(self, item_ids: Sequence[str]) -> PairCounts:
        """The same rows re-indexed onto another item list (e.g. a fit's ``item_ids``).

        Items of ``self`` that no row uses may be absent from ``item_ids``; an item that a
        row uses must be present.

        Args:
            item_ids: The target item list.

        Raises:
            InputError: A row names an item that is not in ``item_ids`` (the message lists
                up to three of them).
        """
        target = tuple(item_ids)
        if target == tuple(self.item_ids):
            return self
        pos = {k: i for i, k in enumerate(target)}
        used = np.unique(np.concatenate([self.first, self.second]))
        unknown = [self.item_ids[i] for i in used if self.item_ids[i] not in pos]
        if unknown:
            raise InputError(
                f"{len(unknown)} item(s) in the pairs are not in the target item list "
                f"of {len(target)} items, e.g. {unknown[:3]}"
            )
        remap = np.full(self.n_items, -1, dtype=np.int64)
        remap[used] = [pos[self.item_ids[i]] for i in used]
        return PairCounts(
            target,
            remap[self.first],
            remap[self.second],
            self.first_wins,
            self.second_wins,
            self.unparseable,
            fractional=self.fractional,
        )

    def merged(self) -> PairCounts:
        """Sum rows that share the same ordered pair."""
        key = self.first * self.n_items + self.second
        uniq, inv = np.unique(key, return_inverse=True)
        sums = [np.bincount(inv, weights=getattr(self, c), minlength=uniq.size) for c in COLUMNS[2:]]
        if not self.fractional:
            sums = [x.astype(np.int64) for x in sums]
        return PairCounts(self.item_ids, uniq // self.n_items, uniq % self.n_items, *sums, fractional=self.fractional)

    def to_frame(self) -> pd.DataFrame:
        """Long DataFrame with item ids in ``first``/``second`` and the three count columns."""
        ids = np.asarray(self.item_ids, dtype=object)
        data = {c: getattr(self, c) for c in COLUMNS}
        data["first"], data["second"] = ids[self.first], ids[self.second]
        return pd.DataFrame(data, columns=list(COLUMNS))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, item_ids: Sequence[str] | None = None) -> PairCounts:
        """Build from a DataFrame with the columns of :meth:`to_frame`.

        Args:
            frame: One row per ordered pair; ``unparseable`` may be omitted (taken as 0).
            item_ids: The full item list (items never compared may appear here); by default
                the sorted ids found in ``first``/``second``.
        """
        missing = [c for c in COLUMNS[:4] if c not in frame.columns]
        if missing:
            raise InputError(f"pair frame is missing columns {missing}")
        _check_ids_present(frame)
        first, second = frame["first"].astype(str), frame["second"].astype(str)
        ids = tuple(item_ids) if item_ids is not None else tuple(sorted(set(first) | set(second)))
        pos = {k: i for i, k in enumerate(ids)}
        unknown = sorted((set(first) | set(second)) - set(pos))
        if unknown:
            raise InputError(f"pair frame names unknown item ids, e.g. {unknown[:3]}")
        unp = frame["unparseable"] if "unparseable" in frame.columns else np.zeros(len(frame))
        return cls(
            ids,
            first.map(pos).to_numpy(),
            second.map(pos).to_numpy(),
            frame["first_wins"].to_numpy(),
            frame["second_wins"].to_numpy(),
            np.asarray(unp),
        )

    @classmethod
    def from_outcomes(cls, item_ids: Sequence[str], outcomes: Iterable[PairOutcome]) -> PairCounts:
        """Build from :class:`PairOutcome` records.

        Args:
            item_ids: The full item list.
            outcomes: One record per ordered pair (duplicates are allowed; see :meth:`merged`).
        """
        rows = [(o.first, o.second, o.first_wins, o.second_wins, o.unparseable) for o in outcomes]
        return cls.from_frame(pd.DataFrame(rows, columns=list(COLUMNS)), item_ids)

    def to_outcomes(self) -> list[PairOutcome]:
        """Rows as :class:`PairOutcome` records."""
        return [
            PairOutcome(str(a), str(b), int(w1), int(w2), int(u))
            for a, b, w1, w2, u in self.to_frame().itertuples(index=False)
        ]
