"""Held-out scoring: exact 0.5 predictions are ties, excluded and counted."""

import math

import numpy as np
import pytest

from steerlab.prefs import PairCounts, score_probabilities


def test_ties_excluded_and_counted():
    data = PairCounts(("a", "b", "c"), np.array([0, 1, 2]), np.array([1, 2, 0]),
                      np.array([2, 1, 1]), np.array([1, 3, 0]), np.array([0, 0, 5]))
    p = np.array([0.7, 0.5, 0.2])
    m = score_probabilities(p, data)
    # row 0: p > .5, first won twice -> 2 correct; row 1: p == .5 -> 4 ties;
    # row 2: p < .5 predicts the second item, which never won -> 0 correct of 1.
    assert (m.n_correct, m.n_ties, m.n_scored) == (2, 4, 4)
    assert m.accuracy == 0.5
    nll = -(2 * math.log(.7) + math.log(.3) + 4 * math.log(.5) + math.log(.2)) / 8
    assert m.nll == pytest.approx(nll)
