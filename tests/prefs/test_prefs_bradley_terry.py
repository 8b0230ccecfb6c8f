"""Bradley-Terry baseline: the two-item closed form."""

import math

import numpy as np
import pytest

from steerlab.prefs import PairCounts, fit_bradley_terry


def test_two_items_log_odds():
    # 3 wins to 1 (split over both orders): beta_a - beta_b = log(3/1).
    data = PairCounts(
        ("a", "b"), np.array([0, 1]), np.array([1, 0]), np.array([2, 0]), np.array([1, 1]), np.array([0, 0])
    )
    fit = fit_bradley_terry(data, ridge=1e-9)
    assert fit.scores[0] - fit.scores[1] == pytest.approx(math.log(3), abs=1e-4)
    assert fit.prob_first_wins(np.array([0]), np.array([1]))[0] == pytest.approx(0.75, abs=1e-4)
