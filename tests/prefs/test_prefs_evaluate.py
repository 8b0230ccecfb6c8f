"""Held-out scoring: exact 0.5 predictions are ties, excluded and counted; held-out data are
matched to the model by item id."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr

from steerlab.errors import InputError
from steerlab.prefs import (
    PairCounts,
    ThurstonianOracle,
    evaluate_pairs,
    fit_bradley_terry,
    fit_thurstonian,
    score_probabilities,
)


def test_ties_excluded_and_counted():
    data = PairCounts(
        ("a", "b", "c"),
        np.array([0, 1, 2]),
        np.array([1, 2, 0]),
        np.array([2, 1, 1]),
        np.array([1, 3, 0]),
        np.array([0, 0, 5]),
    )
    p = np.array([0.7, 0.5, 0.2])
    m = score_probabilities(p, data)
    # row 0: p > .5, first won twice -> 2 correct; row 1: p == .5 -> 4 ties;
    # row 2: p < .5 predicts the second item, which never won -> 0 correct of 1.
    assert (m.n_correct, m.n_ties, m.n_scored) == (2, 4, 4)
    assert m.accuracy == 0.5
    nll = -(2 * math.log(0.7) + math.log(0.3) + 4 * math.log(0.5) + math.log(0.2)) / 8
    assert m.nll == pytest.approx(nll)


def _fit_z_a_m():
    # Item list deliberately not sorted: z beats a beats m (and z beats m), in both orders.
    ids = ("z", "a", "m")
    train = PairCounts(
        ids,
        np.array([0, 1, 0, 1, 2, 2]),
        np.array([1, 2, 2, 0, 1, 0]),
        np.array([4, 4, 4, 1, 1, 1]),
        np.array([1, 1, 1, 4, 4, 4]),
        np.zeros(6, int),
    )
    return fit_thurstonian(train), fit_bradley_terry(train)


@pytest.mark.parametrize("which", [0, 1])
def test_held_out_on_another_item_list_is_matched_by_id(which):
    # Regression: held-out counts over the sorted ids ("a", "z") were read by index against
    # the fit's ("z", "a", "m"), so "a" was scored as "z": accuracy 0.0 instead of 1.0.
    model = _fit_z_a_m()[which]
    frame = pd.DataFrame(dict(first=["a"], second=["z"], first_wins=[1], second_wins=[3]))
    by_fit_ids = evaluate_pairs(model, PairCounts.from_frame(frame, model.item_ids))
    own_ids = evaluate_pairs(model, PairCounts.from_frame(frame))  # ("a", "z")
    extra = evaluate_pairs(model, PairCounts.from_frame(frame, ("q", "z", "a")))  # "q" unused
    # reference by hand: p = P(a first beats z) from the model's own numbers for a and z
    a, z = model.item_ids.index("a"), model.item_ids.index("z")
    if which == 0:
        p = ndtr((model.mu[a] - model.mu[z]) / math.hypot(model.sigma[a], model.sigma[z]))
    else:
        p = 1 / (1 + math.exp(-(model.scores[a] - model.scores[z])))
    assert p < 0.5  # z is the better item: 3 correct, 1 wrong
    for m in (by_fit_ids, own_ids, extra):
        assert (m.accuracy, m.n_correct, m.n_scored) == (0.75, 3, 4)
        assert m.nll == pytest.approx(-(math.log(p) + 3 * math.log(1 - p)) / 4)


def test_held_out_with_unknown_items_is_refused():
    # Regression: a held-out set with more items than the fit raised a bare IndexError.
    fit = _fit_z_a_m()[0]
    frame = pd.DataFrame(dict(first=["a", "q"], second=["z", "r"], first_wins=[1, 1], second_wins=[3, 0]))
    with pytest.raises(InputError, match=r"model's items.*2 item\(s\).*\['q', 'r'\]"):
        evaluate_pairs(fit, PairCounts.from_frame(frame, ("a", "q", "r", "z")))
    oracle = ThurstonianOracle(np.zeros(2), np.ones(2))  # index-based, 2 items
    with pytest.raises(InputError, match="3 items"):
        evaluate_pairs(oracle, PairCounts.from_frame(frame.iloc[:1], ("a", "b", "z")))
