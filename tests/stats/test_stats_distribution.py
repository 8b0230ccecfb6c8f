"""KL from uniform on the declared support; discrimination and informative correlation."""

import math

import numpy as np
import pandas as pd
import pytest

from steerlab.errors import InputError
from steerlab.prefs import Scale
from steerlab.stats import discrimination, informative_correlation, kl_from_uniform

S15 = Scale.integer_range(1, 5)


def test_kl_by_hand_and_normalised():
    r = kl_from_uniform(np.array([4, 4, 4, 5, np.nan]), S15)
    # p = (0, 0, 0, 3/4, 1/4): KL = 3/4 log(5 * 3/4) + 1/4 log(5 * 1/4)
    kl = 0.75 * math.log(3.75) + 0.25 * math.log(1.25)
    assert r.kl == pytest.approx(kl) and r.kl_normalized == pytest.approx(kl / math.log(5))
    assert (r.n, r.n_missing, r.distribution) == (4, 1, (0, 0, 0, 0.75, 0.25))


def test_kl_uses_declared_not_observed_support():
    # 4 and 5 equally often: uniform over what was observed (KL 0), not over 1..5.
    assert kl_from_uniform(np.array([4, 5]), S15).kl == pytest.approx(math.log(5 / 2))
    assert kl_from_uniform(np.array([1, 2, 3, 4, 5]), S15).kl == pytest.approx(0.0)
    assert kl_from_uniform(np.array([3, 3]), S15).kl_normalized == pytest.approx(1.0)
    with pytest.raises(InputError, match="outside the declared support"):
        kl_from_uniform(np.array([4, 6]), S15)


def _frame(matrix: dict[str, list[float]]) -> pd.DataFrame:
    rows = [(i, "m", "t", s, 0, v) for i, vals in matrix.items() for s, v in enumerate(vals)]
    return pd.DataFrame(rows, columns=["item", "rater", "template", "seed", "sample", "value"])


def test_discrimination_by_hand():
    d = discrimination(_frame({"A": [4, 4], "B": [4, 3], "C": [4, 4], "D": [5, np.nan]}), scale=S15)
    # values 4,4,4,3,4,4,5: mode 4; non-modal responses 2 of 7; items B and D of 4
    assert (d.mode, d.response_rate, d.item_rate, d.n_missing) == (4.0, 2 / 7, 0.5, 1)


def test_informative_correlation_restricts_to_non_modal_items():
    m = {"A": [4, 4], "B": [2, 3], "C": [4, 4], "D": [5, 4], "E": [1, 2], "F": [4, 4]}
    res = informative_correlation(_frame(m), scale=S15)
    # informative items B, D, E: seeds (2, 5, 1) and (3, 4, 2)
    assert res.mean == pytest.approx(np.corrcoef([2, 5, 1], [3, 4, 2])[0, 1])
    assert res.pairs["n_items"].tolist() == [3]
