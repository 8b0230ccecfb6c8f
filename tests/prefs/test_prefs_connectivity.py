"""Items never compared and comparison graphs in several pieces are reported, not hidden."""

import numpy as np

from steerlab.prefs import PairCounts, bootstrap_mu, fit_bradley_terry, fit_thurstonian
from steerlab.prefs.graphs import random_pairs

IDS = ("a", "b", "c", "d", "e", "f", "g")
# rows (first, second, first_wins, second_wins, unparseable); "g" appears only in an
# unparseable row, "f" in none: neither was ever compared.
ROWS = [
    ("a", "b", 3, 1, 0),
    ("b", "a", 1, 2, 0),
    ("c", "d", 2, 2, 0),
    ("d", "e", 3, 0, 0),
    ("e", "c", 1, 1, 0),
    ("a", "g", 0, 0, 4),
]


def _data() -> PairCounts:
    f, s, w1, w2, u = zip(*ROWS)
    return PairCounts(
        IDS,
        np.array([IDS.index(x) for x in f]),
        np.array([IDS.index(x) for x in s]),
        np.array(w1),
        np.array(w2),
        np.array(u),
    )


def _bfs_components(n: int, edges: list[tuple[int, int]]) -> list[set[int]]:
    """Reference: components by breadth-first search over an adjacency list."""
    adj: dict[int, set[int]] = {i: set() for i in range(n)}
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    seen: set[int] = set()
    out = []
    for start in range(n):
        if start in seen or not adj[start]:
            continue
        comp, frontier = {start}, [start]
        while frontier:
            nxt = [j for i in frontier for j in adj[i] if j not in comp]
            comp.update(nxt)
            frontier = nxt
        seen |= comp
        out.append(comp)
    return out


def test_counts_and_components_by_hand():
    g = _data().comparison_graph()
    # a: 4 + 3 = 7, b: 7; c: 4 + 2 = 6, d: 4 + 3 = 7, e: 3 + 2 = 5; f, g: 0 (g only unparseable)
    assert g.comparisons_per_item.tolist() == [7, 7, 6, 7, 5, 0, 0]
    # {c, d, e} is the larger component -> 0; {a, b} -> 1; never compared -> -1
    assert g.component.tolist() == [1, 1, 0, 0, 0, -1, -1]
    assert g.n_components == 2
    assert g.compared.tolist() == [True] * 5 + [False] * 2


def test_components_match_breadth_first_search():
    rng = np.random.default_rng(4)
    n = 60
    pairs = random_pairs(n, 35, rng)  # sparse: many components and loners
    wins = rng.integers(0, 2, (35, 2))
    data = PairCounts(tuple(map(str, range(n))), pairs[:, 0], pairs[:, 1], wins[:, 0], wins[:, 1], np.zeros(35, int))
    g = data.comparison_graph()
    used = [tuple(p) for p, w in zip(pairs.tolist(), wins.sum(1)) if w > 0]
    ref = _bfs_components(n, used)
    ours = [set(np.flatnonzero(g.component == c).tolist()) for c in range(g.n_components)]
    assert sorted(map(sorted, ours)) == sorted(map(sorted, ref))
    assert [len(c) for c in ours] == sorted((len(c) for c in ref), reverse=True)
    assert set(np.flatnonzero(g.component == -1).tolist()) == set(range(n)) - set().union(*ref)


def test_fits_flag_uncompared_items_and_split_graphs():
    # Regression: f and g got mu = mean (0) and zero-width bootstrap intervals with no flag,
    # and nothing said that {a, b} and {c, d, e} cannot be compared with each other.
    data = _data()
    for fit in (fit_thurstonian(data), fit_bradley_terry(data)):
        frame = fit.to_frame()
        assert frame["component"].tolist() == [1, 1, 0, 0, 0, -1, -1]
        assert frame["n_comparisons"].tolist() == [7, 7, 6, 7, 5, 0, 0]
        never, split = fit.warnings
        assert "2 item(s) never compared" in never and "['f', 'g']" in never
        assert "2 connected components (sizes [3, 2])" in split and "comparable only within" in split
    ci = bootstrap_mu(data, fit_thurstonian(data), n_boot=10, rng=np.random.default_rng(0))
    assert np.isnan(ci.lo[5:]).all() and np.isnan(ci.hi[5:]).all()
    assert (ci.hi[:5] > ci.lo[:5]).all()


def test_connected_data_has_no_warnings():
    data = _data()
    ab = data.select(np.array([True, True, False, False, False, False]))
    fit = fit_thurstonian(PairCounts(("a", "b"), ab.first, ab.second, ab.first_wins, ab.second_wins, ab.unparseable))
    assert fit.warnings == () and fit.graph.n_components == 1
