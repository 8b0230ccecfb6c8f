"""Data model: items, ordered pair counts, ratings; round trips and input errors."""

import numpy as np
import pandas as pd
import pytest

from steerlab.errors import InputError
from steerlab.prefs import (
    Item,
    PairCounts,
    PairOutcome,
    Rating,
    Scale,
    items_from_frame,
    items_to_frame,
    ratings_from_frame,
    ratings_to_frame,
)


def test_items_round_trip_and_duplicates():
    items = [Item("a", "math"), Item("b", "alpaca")]
    assert items_from_frame(items_to_frame(items)) == items
    with pytest.raises(InputError, match="duplicate"):
        items_to_frame([Item("a"), Item("a")])


def test_pair_counts_keep_position_and_round_trip():
    outs = [PairOutcome("a", "b", 3, 1, 0), PairOutcome("b", "a", 0, 2, 1)]
    pc = PairCounts.from_outcomes(("a", "b", "c"), outs)
    assert pc.to_outcomes() == outs  # order of presentation kept
    assert pc.n_comparisons == 3 + 1 + 0 + 2  # unparseable not counted
    back = PairCounts.from_frame(pc.to_frame(), pc.item_ids)
    assert back.to_outcomes() == outs
    merged = PairCounts.from_outcomes(("a", "b"), outs + [PairOutcome("a", "b", 1, 1, 0)]).merged()
    assert merged.to_outcomes() == [PairOutcome("a", "b", 4, 2, 0), PairOutcome("b", "a", 0, 2, 1)]


@pytest.mark.parametrize(
    "bad, msg",
    [
        (dict(first_wins=[-1]), "negative"),
        (dict(second=[0]), "itself"),
        (dict(first=[5]), "out of range"),
        (dict(first_wins=[1.5]), "whole numbers"),
    ],
)
def test_pair_counts_reject_bad_input(bad, msg):
    cols = dict(first=[0], second=[1], first_wins=[1], second_wins=[0], unparseable=[0]) | bad
    with pytest.raises(InputError, match=msg):
        PairCounts(
            ("a", "b"), *(np.asarray(cols[c]) for c in ("first", "second", "first_wins", "second_wins", "unparseable"))
        )


def test_pair_frame_with_unknown_item():
    frame = pd.DataFrame(dict(first=["a"], second=["z"], first_wins=[1], second_wins=[0]))
    with pytest.raises(InputError, match="unknown item"):
        PairCounts.from_frame(frame, ("a", "b"))


def test_ratings_round_trip_with_missing():
    rs = [Rating("a", "m", "t", 0, 0, 4.0), Rating("a", "m", "t", 1, 0, None)]
    frame = ratings_to_frame(rs)
    assert np.isnan(frame["value"].iloc[1])
    assert ratings_from_frame(frame) == rs


def test_scale_rejects_off_support_values():
    s = Scale.integer_range(1, 5, "stated_1_5")
    s.check(np.array([1, 5, np.nan]))
    with pytest.raises(InputError, match="outside the declared support"):
        s.check(np.array([1, 6]))
    with pytest.raises(InputError):
        Scale((3, 1))


@pytest.mark.parametrize("missing", [None, np.nan, pd.NA])
@pytest.mark.parametrize("column", ["first", "second"])
def test_pair_frame_with_missing_id_names_the_row(missing, column):
    # Regression: a None/NaN id raised a bare TypeError (sorting str with float).
    frame = pd.DataFrame(
        dict(first=["a", "b", "a"], second=["b", "c", "c"], first_wins=[1, 2, 0], second_wins=[0, 1, 1]),
        index=[10, 11, 12],
    )
    frame[column] = frame[column].astype(object)
    frame.loc[12, column] = missing
    with pytest.raises(InputError, match=rf"row 2 \(index 12\): missing item id in column '{column}'"):
        PairCounts.from_frame(frame)
    with pytest.raises(InputError, match="missing item id"):
        PairCounts.from_frame(frame, ("a", "b", "c"))  # also with the item list given
