"""Comparison designs: random d-regular graphs and uniformly random pair sets.

Pairs are unordered ``(i, j)`` with ``i < j``, returned as an int array of shape (m, 2).
"""

from __future__ import annotations

import numpy as np

from steerlab.errors import InputError


def pair_keys(pairs: np.ndarray, n: int) -> np.ndarray:
    """One integer per unordered pair: ``min * n + max``."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return pairs.min(axis=1) * n + pairs.max(axis=1)


def _circulant_edges(n: int, d: int) -> np.ndarray:
    """A deterministic d-regular graph: i joined to i+1..i+d//2 (and i+n/2 if d is odd)."""
    i = np.arange(n)
    steps = list(range(1, d // 2 + 1)) + ([n // 2] if d % 2 else [])
    edges = np.concatenate([np.stack([i, (i + k) % n], axis=1) for k in steps])
    edges = np.sort(edges, axis=1)
    return np.unique(edges, axis=0)


def random_regular_graph(n: int, d: int, rng: np.random.Generator, swaps_per_edge: int = 10) -> np.ndarray:
    """Edges of a random simple d-regular graph on ``n`` nodes, shape (n*d/2, 2).

    Starts from a circulant d-regular graph, randomises it with degree-preserving double
    edge swaps (rejecting self-loops and duplicate edges), then relabels nodes randomly.

    Args:
        n: Number of nodes.
        d: Degree of every node (needs ``0 < d < n`` and ``n * d`` even).
        rng: Random generator.
        swaps_per_edge: Attempted swaps per edge (mixing effort).
    """
    if not 0 < d < n or (n * d) % 2:
        raise InputError(f"no simple {d}-regular graph on {n} nodes (need 0 < d < n, n*d even)")
    edges = [tuple(e) for e in _circulant_edges(n, d)]
    present = {a * n + b for a, b in edges}
    m = len(edges)
    picks = rng.integers(0, m, size=(swaps_per_edge * m, 2))
    flips = rng.random(swaps_per_edge * m) < 0.5
    for (x, y), flip in zip(picks, flips):
        (a, b), (c, e) = edges[x], edges[y]
        if flip:
            c, e = e, c
        new1, new2 = (min(a, c), max(a, c)), (min(b, e), max(b, e))
        k1, k2 = new1[0] * n + new1[1], new2[0] * n + new2[1]
        if a == c or b == e or k1 in present or k2 in present or k1 == k2:
            continue
        present -= {edges[x][0] * n + edges[x][1], edges[y][0] * n + edges[y][1]}
        present |= {k1, k2}
        edges[x], edges[y] = new1, new2
    perm = rng.permutation(n)
    out = perm[np.asarray(edges, dtype=np.int64)]
    return np.sort(out, axis=1)


def random_pairs(n: int, m: int, rng: np.random.Generator, exclude: np.ndarray | None = None) -> np.ndarray:
    """``m`` distinct unordered pairs drawn uniformly, avoiding the keys in ``exclude``.

    Args:
        n: Number of items.
        m: Number of pairs wanted.
        rng: Random generator.
        exclude: Pair keys (see :func:`pair_keys`) that must not be drawn.
    """
    banned = np.unique(exclude) if exclude is not None else np.empty(0, np.int64)
    available = n * (n - 1) // 2 - banned.size
    if m > available:
        raise InputError(f"asked for {m} pairs but only {available} are available")
    if 4 * m > available:  # dense request: enumerate what is left
        i, j = np.triu_indices(n, k=1)
        keys = i * n + j
        keys = rng.permutation(keys[~np.isin(keys, banned)])[:m]
        return np.stack([keys // n, keys % n], axis=1)
    chosen = np.empty(0, np.int64)
    while chosen.size < m:
        cand = rng.integers(0, n, size=(2 * (m - chosen.size) + 16, 2))
        cand = cand[cand[:, 0] != cand[:, 1]]
        keys = pair_keys(cand, n)
        keys = keys[~np.isin(keys, banned) & ~np.isin(keys, chosen)]
        _, first_idx = np.unique(keys, return_index=True)
        keys = keys[np.sort(first_idx)]  # keep draw order, drop repeats
        chosen = np.concatenate([chosen, keys[: m - chosen.size]])
    return np.stack([chosen // n, chosen % n], axis=1)
