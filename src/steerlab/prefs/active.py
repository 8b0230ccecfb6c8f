"""Active learning of Thurstonian utilities: ask the pairs that teach the most.

The loop (:func:`run_active_learning`):
  1. Draw a random ``initial_degree``-regular graph, and a fixed held-out set of uniformly
     random pairs outside it; ask the held-out pairs once and never fit on them.
  2. Ask every edge of the graph; fit.
  3. Each round, score candidate unsampled pairs and ask the best ``pairs_per_round``
     (default: half as many as asked so far, so rounds grow geometrically). The score of
     a pair is the expected information of one more outcome, split between its two items:

         score(i, j) = info(z_ij) * (1 / (1 + deg_i) + 1 / (1 + deg_j))
         z_ij = (mu_i - mu_j) / sqrt(sigma_i^2 + sigma_j^2)
         info(z) = phi(z)^2 / (Phi(z) * Phi(-z)) / info(0)      (Fisher information, 1 at z=0)

     (higher is better: pairs whose outcome is uncertain, i.e. close in mu, involving items
     compared least). Candidates are ``candidates_per_item * n`` uniformly random unsampled
     pairs, so a round costs O(n), not O(n^2), and the design stays well connected.
     (Taking candidates only among each item's nearest neighbours in the current mu order
     did worse on synthetic data: early orders are wrong, and local-only designs lock the
     errors in; see docs/benchmarks.md.) Selection is greedy with at most
     ``ceil(4 * pairs_per_round / n)`` new pairs per item per round.
     Each pair is shown in a random order (position balanced in expectation).
  4. Refit, warm-started from the previous fit. Stop when the Spearman correlation between
     successive fits' mu reaches ``threshold`` or when the comparison budget is spent.

With ``strategy="random"`` step 3 draws uniformly random unsampled pairs instead: the
baseline the active rule must beat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.special import log_ndtr
from scipy.stats import norm, spearmanr

from steerlab.errors import InputError
from steerlab.prefs._pairs import PairCounts
from steerlab.prefs.evaluate import PairMetrics, evaluate_pairs
from steerlab.prefs.graphs import pair_keys, random_pairs, random_regular_graph
from steerlab.prefs.synthetic import random_orientation
from steerlab.prefs.thurstonian import ThurstonianFit, check_settings, fit_thurstonian

Oracle = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""Given (first, second) item-index arrays, return (first_wins, second_wins, unparseable).

Float win arrays are fractional counts (:class:`PairCounts` ``fractional=True``), e.g. P(first)
and 1 − P(first) from one scoring pass; integer arrays are sampled answers."""


@dataclass(frozen=True)
class ActiveLearningConfig:
    """Settings of :func:`run_active_learning` (defaults in brackets).

    Attributes:
        initial_degree: Degree of the random regular starting graph [5].
        pairs_per_round: Pairs asked per round; None means ``growth`` times the training
            comparisons so far [None].
        growth: Round size relative to the data so far when ``pairs_per_round`` is None [0.5].
            Geometric rounds make successive fits differ by a fixed share of data, so the
            stopping threshold means about the same at every data size. (For random pairs
            1 - Spearman(successive) came out near ``growth`` * (1 - Spearman(fit, truth));
            the active rule's fits agree with each other more than that, hence the strict
            default threshold; see docs/benchmarks.md.)
        candidates_per_item: Random candidate pairs scored per item and round [20].
        threshold: Stop when Spearman(mu of this fit, mu of previous fit) >= this [0.997].
        max_comparisons: Budget of training comparisons [None: 100 per item].
        max_rounds: Hard limit on rounds after the starting graph [100].
        n_held_out: Held-out pairs asked at the start [None: min(n, 2000)].
        strategy: ``"active"`` (the rule above) or ``"random"`` (uniform baseline).
        lam: Thurstonian penalty passed to every fit [1.0].
        seed: Seed of the random generator for graph, held-out set and orientation [0].
    """

    initial_degree: int = 5
    pairs_per_round: int | None = None
    growth: float = 0.5
    candidates_per_item: int = 20
    threshold: float = 0.997
    max_comparisons: int | None = None
    max_rounds: int = 100
    n_held_out: int | None = None
    strategy: Literal["active", "random"] = "active"
    lam: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class RoundRecord:
    """What one round did.

    Attributes:
        round: 0 for the starting graph, then 1, 2, ...
        n_comparisons: Training comparisons used so far (parseable or not).
        spearman_prev: Spearman of mu with the previous round's mu (NaN at round 0).
        held_out: Held-out accuracy and NLL of this round's fit.
    """

    round: int
    n_comparisons: int
    spearman_prev: float
    held_out: PairMetrics


@dataclass(frozen=True, eq=False)
class ActiveLearningResult:
    """Outcome of :func:`run_active_learning`.

    Attributes:
        fit: The final Thurstonian fit.
        train: All training counts.
        held_out: The fixed held-out counts.
        history: One record per round.
        stop_reason: ``"converged"`` (successive fits agree after a full-size round),
            ``"budget"`` (the comparison budget is spent, or cut the last round short),
            ``"exhausted"`` (no unasked pairs left, or too few for the last round) or
            ``"max_rounds"``.
    """

    fit: ThurstonianFit
    train: PairCounts
    held_out: PairCounts
    history: list[RoundRecord] = field(default_factory=list)
    stop_reason: str = ""

    @property
    def n_comparisons(self) -> int:
        """Training comparisons asked (excluding the held-out set)."""
        return self.history[-1].n_comparisons


def _ask(oracle: Oracle, ids: tuple[str, ...], pairs: np.ndarray, rng: np.random.Generator) -> PairCounts:
    first, second = random_orientation(pairs, rng)
    wins = oracle(first, second)
    return PairCounts(ids, first, second, *wins, fractional=any(np.asarray(w).dtype.kind == "f" for w in wins[:2]))


def probit_information(z: np.ndarray) -> np.ndarray:
    """Fisher information of one probit outcome at ``z``, relative to its value at z=0."""
    log_info = 2 * norm.logpdf(z) - log_ndtr(z) - log_ndtr(-z)
    return np.exp(log_info - np.log(2 / np.pi))


def select_pairs(
    fit: ThurstonianFit,
    degree: np.ndarray,
    asked: np.ndarray,
    k: int,
    cfg: ActiveLearningConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """The ``k`` best unasked pairs by the module-docstring rule, shape (<=k, 2).

    Args:
        fit: The current fit.
        degree: Comparisons per item so far, shape (n,).
        asked: Keys (:func:`pair_keys`) of pairs already asked or held out.
        k: Number of pairs wanted.
        cfg: Settings (candidates_per_item).
        rng: Random generator for the candidate draw.
    """
    n = degree.size
    available = n * (n - 1) // 2 - np.unique(asked).size
    cand = random_pairs(n, min(max(cfg.candidates_per_item * n, k), available), rng, asked)
    i, j = cand[:, 0], cand[:, 1]
    z = (fit.mu[i] - fit.mu[j]) / np.sqrt(fit.sigma[i] ** 2 + fit.sigma[j] ** 2)
    score = probit_information(z) * (1 / (1 + degree[i]) + 1 / (1 + degree[j]))
    cap = int(np.ceil(4 * k / n))
    taken = np.zeros(n, dtype=np.int64)
    chosen: list[int] = []
    for r in np.argsort(-score, kind="stable"):
        a, b = cand[r]
        if taken[a] < cap and taken[b] < cap:
            chosen.append(r)
            taken[a] += 1
            taken[b] += 1
            if len(chosen) == k:
                break
    return cand[np.asarray(chosen, dtype=np.int64)].reshape(-1, 2)


def run_active_learning(
    item_ids: Sequence[str],
    oracle: Oracle,
    config: ActiveLearningConfig = ActiveLearningConfig(),
    on_round: Callable[[RoundRecord, ThurstonianFit], None] | None = None,
) -> ActiveLearningResult:
    """Run the loop in the module docstring until it converges or the budget is spent.

    Args:
        item_ids: The items to rank.
        oracle: Answers ordered pairs (a model wrapper, or a synthetic oracle in tests).
        config: Settings.
        on_round: Called after every fit (e.g. to log correlation with a known truth).
    """
    ids = tuple(item_ids)
    n, cfg = len(ids), config
    rng = np.random.default_rng(cfg.seed)
    budget = cfg.max_comparisons if cfg.max_comparisons is not None else 100 * n
    if (cfg.pairs_per_round is not None and cfg.pairs_per_round < 1) or budget < 1 or not cfg.growth > 0:
        raise InputError("pairs_per_round, growth and max_comparisons must be positive")
    if not np.isfinite(cfg.growth) or not np.isfinite(cfg.threshold):
        raise InputError(f"growth and threshold must be finite, got {cfg.growth}, {cfg.threshold}")
    check_settings(cfg.lam)  # before the oracle (a model) is asked anything
    graph = random_regular_graph(n, cfg.initial_degree, rng)
    held_pairs = random_pairs(n, cfg.n_held_out or min(n, 2000), rng, pair_keys(graph, n))
    held = _ask(oracle, ids, held_pairs, rng)
    train = _ask(oracle, ids, graph, rng)
    asked = np.concatenate([pair_keys(held_pairs, n), pair_keys(graph, n)])
    fit = fit_thurstonian(train, lam=cfg.lam)
    used = int((train.first_wins + train.second_wins + train.unparseable).sum())
    history = [RoundRecord(0, used, float("nan"), evaluate_pairs(fit, held))]
    if on_round:
        on_round(history[-1], fit)
    stop = "max_rounds"
    for rnd in range(1, cfg.max_rounds + 1):
        per_round = cfg.pairs_per_round or max(1, int(round(cfg.growth * used)))
        k = min(per_round, budget - used)
        if k <= 0:
            stop = "budget"
            break
        available = n * (n - 1) // 2 - np.unique(asked).size
        # A round cut short is no test of convergence: successive fits differ less only
        # because less data was added. Such a round stops for the reason that cut it.
        cut_short = "exhausted" if available < k else "budget" if k < per_round else None
        if cfg.strategy == "active":
            degree = np.bincount(np.concatenate([train.first, train.second]), minlength=n).astype(float)
            new = select_pairs(fit, degree, asked, k, cfg, rng)
        else:
            k = min(k, available)
            new = random_pairs(n, k, rng, asked) if k > 0 else np.empty((0, 2), np.int64)
        if new.shape[0] == 0:
            stop = "exhausted"
            break
        batch = _ask(oracle, ids, new, rng)
        train = train.concat(batch)
        asked = np.concatenate([asked, pair_keys(new, n)])
        used += int((batch.first_wins + batch.second_wins + batch.unparseable).sum())
        prev, fit = fit, fit_thurstonian(train, lam=cfg.lam, init=fit)
        rho = float(spearmanr(prev.mu, fit.mu)[0])
        history.append(RoundRecord(rnd, used, rho, evaluate_pairs(fit, held)))
        if on_round:
            on_round(history[-1], fit)
        if rho >= cfg.threshold:
            stop = cut_short or "converged"
            break
    return ActiveLearningResult(fit, train, held, history, stop)
