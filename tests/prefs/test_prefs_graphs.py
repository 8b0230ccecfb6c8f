"""Random designs: d-regular graphs are simple and regular; random pairs are distinct."""

import numpy as np
import pytest

from steerlab.errors import InputError
from steerlab.prefs.graphs import pair_keys, random_pairs, random_regular_graph


@pytest.mark.parametrize("n, d", [(100, 5), (31, 4), (10, 9)])
def test_regular_graph(n, d):
    g = random_regular_graph(n, d, np.random.default_rng(0))
    assert g.shape == (n * d // 2, 2)
    assert (g[:, 0] < g[:, 1]).all()  # no self-loops
    assert np.unique(pair_keys(g, n)).size == len(g)  # no duplicate edges
    assert (np.bincount(g.ravel(), minlength=n) == d).all()


def test_regular_graph_impossible():
    with pytest.raises(InputError):
        random_regular_graph(5, 3, np.random.default_rng(0))


def test_random_pairs_avoid_excluded_and_can_exhaust():
    rng = np.random.default_rng(0)
    first = random_pairs(20, 100, rng)
    rest = random_pairs(20, 90, rng, pair_keys(first, 20))  # 190 pairs in total
    keys = np.r_[pair_keys(first, 20), pair_keys(rest, 20)]
    assert np.unique(keys).size == 190
    with pytest.raises(InputError):
        random_pairs(20, 1, rng, keys)
