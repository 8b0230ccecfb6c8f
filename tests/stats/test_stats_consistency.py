"""Task consistency on hand-computed cases."""

import math

import numpy as np
import pandas as pd
import pytest

from steerlab.errors import InputError
from steerlab.prefs import Scale
from steerlab.stats import task_consistency

SCALES = {"t": Scale.integer_range(1, 5), "u": Scale.integer_range(0, 10)}


def _rows(item, template, values, rater="m"):
    return [(item, rater, template, s, 0, v) for s, v in enumerate(values)]


def _frame(*parts):
    rows = [r for p in parts for r in p]
    return pd.DataFrame(rows, columns=["item", "rater", "template", "seed", "sample", "value"])


def test_alternating_extremes_score_zero_and_constant_scores_one():
    out = task_consistency(_frame(_rows("X", "t", [1, 5, 1, 5]), _rows("Z", "t", [2, 2, 2, 2])), SCALES)
    # X: std([1,5,1,5]) = 2 = half the range 4 -> intra 1, consistency 0.  Z: std 0 -> 1.
    assert out.loc["X", "consistency"] == pytest.approx(0.0)
    assert out.loc["Z", "consistency"] == pytest.approx(1.0)


def test_inter_template_term_by_hand():
    frame = _frame(_rows("Y", "t", [3, 3, 3, 4]), _rows("Y", "u", [5, 5]), _rows("Y", "u", [5, 5], rater="n"))
    # intra: t: std(3,3,3,4) = sqrt(3/16) = 0.4330 on half range 2 -> 0.2165; u: 0 (twice)
    intra = (math.sqrt(3 / 16) / 2 + 0 + 0) / 3
    # inter, rater m: template means rescaled 3.25 -> (3.25-1)/4 = 0.5625, 5 -> 0.5;
    # pop std 0.03125, / 0.5 -> 0.0625.  rater n has one template: no term.
    inter = 0.0625
    out = task_consistency(frame, SCALES, inter_template_weight=0.1)
    assert out.loc["Y", "intra"] == pytest.approx(intra)
    assert out.loc["Y", "inter"] == pytest.approx(inter)
    assert out.loc["Y", "consistency"] == pytest.approx(1 - (0.9 * intra + 0.1 * inter))
    assert out.loc["Y", "n_conditions"] == 3


def test_missing_and_errors():
    out = task_consistency(_frame(_rows("W", "t", [3, np.nan])), SCALES)
    assert math.isnan(out.loc["W", "consistency"])  # one seed left: undefined
    with pytest.raises(InputError, match="outside the declared support"):
        task_consistency(_frame(_rows("X", "t", [1, 7])), SCALES)
    with pytest.raises(InputError, match="no declared scale"):
        task_consistency(_frame(_rows("X", "v", [1, 2])), SCALES)
