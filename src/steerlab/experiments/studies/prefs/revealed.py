"""Seed 004's revealed preferences: the model as the oracle of active learning, utilities by
origin, position bias, refusal–utility and stated–revealed correlation.

The flow (:meth:`PrefsRevealed.flow`), for the (first) model:
  1. complete — the model answers every task; replies get the refusal-marker verdict
  2. choose   — :func:`steerlab.prefs.run_active_learning` asks for pairs (a random regular
                graph, a held-out set, then rounds of informative pairs among *sampled*
                candidates, never all N² pairs); each pair is asked in BOTH orders. A choice is
                read from one pass (``mode: dist``: P(A), P(B) → ``virtual_samples`` expected
                counts per order) or from ``samples`` sampled replies (``mode: sample``,
                optionally reasoning first and ending with "Answer: A/B"). Every round is one
                ``run.cells`` call, so a resumed run replays the loop from the rows on disk
  3. rate     — (optional) stated ratings of the same completions, for stated–revealed
  4. summarise — utilities μ by origin, active-learning history (held-out accuracy), position
                bias (first-position rate, order consistency, win rate by position per origin),
                refusal–μ point-biserial by origin, stated–revealed correlation
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from steerlab.errors import InputError
from steerlab.experiments.engine.config import Strict
from steerlab.experiments.engine.records import Record, Summary
from steerlab.experiments.engine.registry import register_kind
from steerlab.experiments.engine.run import Run
from steerlab.experiments.studies.prefs.common import (
    PrefsStudyConfig,
    RatingConfig,
    choice_cell,
    completion_cells,
    load_study_tasks,
    rating_cells,
    ratings_frame,
    usable,
)
from steerlab.experiments.studies.prefs.records import PrefRow
from steerlab.experiments.studies.prefs.stages import CHOOSE, COMPLETE, RATE, PrefsKind
from steerlab.experiments.studies.prefs.summary import (
    Estimate,
    RefusalGroup,
    fin,
    mean,
    per_completion,
    refusal_group,
)

DEFINITIONS = """\
choice (dist)     P(first) = P(A) / (P(A) + P(B)) from one pass; it counts as `virtual_samples` comparisons:
                  round(K·P(first)) for the first-shown task, the rest for the second
choice (sample)   `samples` sampled replies per order, parsed (unparseable replies are counted, not fitted)
μ                 Thurstonian utility (steerlab.prefs.fit_thurstonian, λ as configured), mean zero
held-out acc.     share of held-out comparisons whose winner had predicted P > 0.5
first-position    share of comparisons won by the task shown first (A); Wilson 95% interval and
rate              exact binomial p against 0.5; order consistency = share of pairs whose winner is the
                  same in both orders
position split    win rate of an origin's tasks when shown first / second, and the part of its win rate
                  expected from position alone (steerlab.prefs.position_decomposition)
refusal–μ         point-biserial r between the refusal-marker verdict of a task's completion and its μ
stated–revealed   Pearson and Spearman r between μ and the stated rating (expected rating of the
                  answer distribution; per seed for sampled ratings, then mean ± sd over seeds)"""


class PairwiseConfig(Strict):
    """How one pairwise choice is read."""

    template: str = Field("prefer_completing", description="pairwise template name")
    mode: Literal["dist", "sample"] = Field("dist", description="dist: P(A)/P(B) from one pass; sample: K replies")
    samples: int = Field(10, ge=1, description="sample mode: replies per order")
    virtual_samples: int = Field(10, ge=1, description="dist mode: comparisons one probability counts as")
    reasoning: bool = Field(False, description="sample mode: ask for reasoning, then 'Answer: A/B'")
    max_new_tokens: int = Field(6, ge=1, description="sample mode: tokens per reply (reasoning needs ~64)")
    temperature: float = Field(1.0, ge=0, description="sample mode: sampling temperature")


class ActiveConfig(Strict):
    """Settings of the active-learning loop (steerlab.prefs.ActiveLearningConfig)."""

    initial_degree: int = Field(4, ge=1, description="degree of the random regular starting graph")
    growth: float = Field(0.5, gt=0, description="pairs per round, relative to the starting graph's pairs")
    threshold: float = Field(0.997, gt=0, le=1, description="stop at this Spearman between successive fits")
    max_pairs: int | None = Field(
        None,
        ge=1,
        description="budget of training pairs (default: 10 per task); the round that reaches it is asked whole",
    )
    max_rounds: int = Field(20, ge=1, description="most rounds after the starting graph")
    n_held_out: int | None = Field(
        None, ge=1, description="held-out pairs (default: one per task, at most the pairs outside the starting graph)"
    )
    candidates_per_item: int = Field(20, ge=1, description="random candidate pairs scored per task and round")
    lam: float = Field(1.0, ge=0, description="Thurstonian penalty λ")


class PrefsRevealedConfig(PrefsStudyConfig):
    """Revealed preferences by active learning, with position bias and stated–revealed correlation."""

    kind: Literal["prefs_revealed"] = Field("prefs_revealed", description="experiment kind")
    name: str = Field("prefs_revealed", description="run name")
    pairwise: PairwiseConfig = PairwiseConfig()
    active: ActiveConfig = ActiveConfig()
    stated: RatingConfig | None = Field(
        RatingConfig(templates=["anchored_precise_1_5"], seeds=2),
        description="stated ratings for stated–revealed (null = skip)",
    )


class UtilityRow(Record):
    item: str
    origin: str
    mu: float
    sigma: float
    refused: bool
    stated: float | None


class RoundRow(Record):
    round: int
    pairs: int
    comparisons: int
    spearman_prev: float | None
    held_out_accuracy: float | None
    held_out_nll: float | None


class OriginMu(Record):
    origin: str
    n: int
    mu: Estimate


class PositionRow(Record):
    group: str
    n: int
    win_rate: float | None
    win_rate_first: float | None
    win_rate_second: float | None
    expected_from_position: float | None
    content_effect: float | None


class StatedRevealed(Record):
    origin: str
    n: int
    pearson: float | None
    spearman: float | None
    per_seed_mean: float | None = Field(description="mean over seeds of Pearson r(μ, that seed's sampled rating)")
    per_seed_sd: float | None
    seeds: int


class PrefsRevealedSummary(Summary):
    template: str
    mode: str
    n_tasks: int
    n_pairs: int
    n_choice_cells: int
    unparseable: int
    stop_reason: str
    utilities: list[UtilityRow]
    by_origin: list[OriginMu]
    history: list[RoundRow]
    first_position: Estimate
    first_position_p: float | None
    mean_p_first: float | None = Field(description="dist mode: mean P(first) over all cells")
    letter_mass: float | None = Field(description="dist mode: mean P(A) + P(B)")
    order_consistency: float | None
    order_pairs: int
    position: list[PositionRow]
    refusal: list[RefusalGroup]
    stated_revealed: list[StatedRevealed]


@register_kind
class PrefsRevealed(PrefsKind):
    """Revealed preferences (see the module docstring)."""

    name = "prefs_revealed"
    Config = PrefsRevealedConfig
    Summary = PrefsRevealedSummary

    def report(self, cfg: PrefsRevealedConfig, summary: PrefsRevealedSummary, out_dir: Path) -> Path:
        from steerlab.experiments.studies.prefs.report import render_revealed

        return render_revealed(cfg, summary, out_dir, DEFINITIONS)

    def flow(self, cfg: PrefsRevealedConfig, run: Run) -> PrefsRevealedSummary:
        from steerlab.prefs import ActiveLearningConfig, run_active_learning
        from steerlab.prefs.templates import pairwise_template, rating_template

        template = pairwise_template(cfg.pairwise.template, cfg.templates_file)
        tasks = load_study_tasks(cfg)
        by_id = {t.id: t for t in tasks}
        model = cfg.models[0].name

        # 1. complete
        comps = run.cells(
            COMPLETE,
            completion_cells(run, cfg, tasks, model=model, agent=model),
            batch_size=cfg.batch_size,
            desc="complete",
        )
        comp_of = {r.item: r for r in comps}
        ids = [t.id for t in tasks if t.id in {r.item for r in usable(comps, cfg)}]

        # 2. active learning with the model as the oracle; every pair asked in both orders
        p, k = cfg.pairwise, cfg.pairwise.samples if cfg.pairwise.mode == "sample" else 1
        per_pair = 2 * (p.samples if p.mode == "sample" else p.virtual_samples)
        choices: dict[str, PrefRow] = {}

        def oracle(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            cells = [
                choice_cell(
                    run,
                    template,
                    by_id[ids[a]],
                    by_id[ids[b]],
                    comp_of,
                    model=model,
                    agent=model,
                    mode=p.mode,
                    sample=s,
                    reasoning=p.reasoning,
                    max_new_tokens=p.max_new_tokens,
                    temperature=p.temperature,
                )
                for i, j in zip(first, second)
                for a, b in ((i, j), (j, i))
                for s in range(k)
            ]
            rows = run.cells(CHOOSE, cells, batch_size=cfg.batch_size, desc=f"choose: {len(first)} pairs")
            choices.update((r.key, r) for r in rows)
            return oriented_counts(rows, [(ids[i], ids[j]) for i, j in zip(first, second)], cfg.pairwise)

        a, n = cfg.active, len(ids)
        degree = min(a.initial_degree, n - 1) - (min(a.initial_degree, n - 1) * n) % 2  # n * degree must be even
        spare = n * (n - 1) // 2 - n * degree // 2  # pairs left for the held-out set
        if degree < 1 or spare < 1:
            raise InputError(f"prefs_revealed: {n} usable tasks are too few for a starting graph and a held-out set")
        # The loop sizes rounds and its budget in comparisons; one pair here stands for `per_pair` of
        # them, so rounds are given in pairs (growth x the starting graph) and the budget in comparisons.
        result = run_active_learning(
            ids,
            oracle,
            ActiveLearningConfig(
                initial_degree=degree,
                pairs_per_round=max(1, round(a.growth * n * degree / 2)),
                threshold=a.threshold,
                max_comparisons=(a.max_pairs or 10 * n) * per_pair,
                max_rounds=a.max_rounds,
                n_held_out=min(a.n_held_out or n, spare),
                candidates_per_item=a.candidates_per_item,
                lam=a.lam,
                seed=cfg.seed,
            ),
        )

        # 3. stated ratings of the same completions (for stated–revealed)
        stated_rows: list[PrefRow] = []
        if cfg.stated is not None:
            rt = rating_template(cfg.stated.templates[0], cfg.templates_file)
            cells = rating_cells(run, rt, [comp_of[i] for i in ids], by_id, model=model, agent=model, rating=cfg.stated)
            stated_rows = run.cells(RATE, cells, batch_size=cfg.batch_size, desc=f"stated ratings: {len(cells)} cells")

        # 4. summarise
        return summarise(cfg, result, list(choices.values()), comps, stated_rows, per_pair)


def cell_counts(row: PrefRow, pairwise: PairwiseConfig) -> tuple[int, int, int]:
    """(first-shown wins, second-shown wins, unparseable) that one choice row stands for."""
    if row.mode == "dist":
        if row.probs is None:
            return 0, 0, pairwise.virtual_samples
        first = round(pairwise.virtual_samples * row.probs[0])
        return first, pairwise.virtual_samples - first, 0
    return int(row.choice == "A"), int(row.choice == "B"), int(row.choice is None)


def oriented_counts(
    rows: Sequence[PrefRow], pairs: Sequence[tuple[str, str]], pairwise: PairwiseConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per requested (first, second) pair, the wins of each item over both orders, and the unparseable count.

    Args:
        rows: Choice rows of these pairs (both orders, every sample).
        pairs: The pairs as the active-learning loop oriented them.
        pairwise: How rows become counts (:func:`cell_counts`).
    """
    wins: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        w1, w2, u = cell_counts(r, pairwise)
        for key, (x, y) in (((r.item, r.item_b), (w1, w2)), ((r.item_b, r.item), (w2, w1))):
            acc = wins.setdefault(key, [0, 0, 0])  # type: ignore[arg-type]
            acc[0] += x
            acc[1] += y
        wins[(r.item, r.item_b)][2] += u  # type: ignore[index]
    out = np.array(
        [[wins[(a, b)][0], wins[(a, b)][1], wins[(a, b)][2] + wins[(b, a)][2]] for a, b in pairs], dtype=np.int64
    ).reshape(-1, 3)
    return out[:, 0], out[:, 1], out[:, 2]


def position_counts(rows: Sequence[PrefRow], ids: Sequence[str], pairwise: PairwiseConfig):
    """:class:`~steerlab.prefs.PairCounts` with one row per ordered (first-shown, second-shown) cell."""
    from steerlab.prefs import PairCounts

    pos = {i: n for n, i in enumerate(ids)}
    counts = np.array([cell_counts(r, pairwise) for r in rows], dtype=np.int64).reshape(-1, 3)
    return PairCounts(
        tuple(ids),
        np.array([pos[r.item] for r in rows], dtype=np.int64),
        np.array([pos[r.item_b] for r in rows], dtype=np.int64),
        counts[:, 0],
        counts[:, 1],
        counts[:, 2],
    ).merged()


def summarise(
    cfg: PrefsRevealedConfig,
    result,
    choices: Sequence[PrefRow],
    comps: Sequence[PrefRow],
    stated_rows: Sequence[PrefRow],
    per_pair: int,
) -> PrefsRevealedSummary:
    """Every table of the report, from the loop's result and the rows alone."""
    from steerlab.prefs import (
        first_position_rate,
        order_consistency,
        win_rate_by_position,
    )
    from steerlab.stats.bootstrap import wilson_interval

    fit = result.fit
    ids = list(fit.item_ids)
    origin = {r.item: r.origin for r in comps}
    refused = {r.item: r.refusal == "refusal" for r in comps}
    stated = _stated(cfg, stated_rows)
    utilities = [
        UtilityRow(
            item=i,
            origin=origin[i],
            mu=round(float(m), 6),
            sigma=round(float(s), 6),
            refused=refused[i],
            stated=fin(stated.get(i)),
        )
        for i, m, s in zip(ids, fit.mu, fit.sigma)
    ]
    mu = dict(zip(ids, fit.mu))
    origins = sorted({origin[i] for i in ids})
    by_origin = [
        OriginMu(
            origin=o,
            n=sum(origin[i] == o for i in ids),
            mu=mean([float(mu[i]) for i in ids if origin[i] == o], cfg.bootstrap_resamples, cfg.seed),
        )
        for o in origins
    ]
    history = [
        RoundRow(
            round=h.round,
            pairs=h.n_comparisons // per_pair,
            comparisons=h.n_comparisons,
            spearman_prev=fin(h.spearman_prev),
            held_out_accuracy=fin(h.held_out.accuracy),
            held_out_nll=fin(h.held_out.nll),
        )
        for h in result.history
    ]
    counts = position_counts(choices, ids, cfg.pairwise)
    k = int(counts.first_wins.sum())
    w = wilson_interval(k, counts.n_comparisons)  # NaN interval when nothing was parseable
    p_first = first_position_rate(counts).p_value if counts.n_comparisons else None
    cons = order_consistency(counts)
    position = [
        PositionRow(
            group=d.group,
            n=d.n,
            win_rate=fin(d.win_rate),
            win_rate_first=fin(d.win_rate_first),
            win_rate_second=fin(d.win_rate_second),
            expected_from_position=fin(d.expected_from_position),
            content_effect=fin(d.content_effect),
        )
        for d in (win_rate_by_position(counts, origin) if counts.n_comparisons else [])
    ]
    dist = [r for r in choices if r.mode == "dist" and r.probs is not None]
    refusal = [
        refusal_group(
            cfg.models[0].name,
            o,
            np.array([refused[i] for i in ids if o in ("all", origin[i])], dtype=int),
            np.array([mu[i] for i in ids if o in ("all", origin[i])], dtype=float),
            cfg.bootstrap_resamples,
            cfg.seed,
        )
        for o in [*origins, "all"]
    ]
    return PrefsRevealedSummary(
        name=cfg.name,
        template=cfg.pairwise.template,
        mode=cfg.pairwise.mode,
        n_tasks=len(ids),
        n_pairs=int(result.train.first.size + result.held_out.first.size),
        n_choice_cells=len(choices),
        unparseable=int(counts.unparseable.sum()),
        stop_reason=result.stop_reason,
        utilities=utilities,
        by_origin=by_origin,
        history=history,
        first_position=Estimate(value=fin(w.value), low=fin(w.low), high=fin(w.high), n=w.n),
        first_position_p=fin(p_first),
        mean_p_first=fin(np.mean([r.probs[0] for r in dist])) if dist else None,
        letter_mass=fin(np.mean([r.scale_mass for r in dist])) if dist else None,
        order_consistency=fin(cons.rate),
        order_pairs=cons.n_consistent + cons.n_inconsistent,
        position=position,
        refusal=refusal,
        stated_revealed=_stated_revealed(stated_rows, mu, origin, cfg),
    )


def _stated(cfg: PrefsRevealedConfig, rows: Sequence[PrefRow]) -> dict[str, float]:
    if not rows:
        return {}
    frame = ratings_frame(rows)
    use_dist = bool(cfg.stated and cfg.stated.distribution) and frame["expected"].notna().any()
    per = per_completion(frame, use_dist)
    return dict(zip(per["item"], per["rating"]))


def _r(x: np.ndarray, y: np.ndarray, method: str) -> float | None:
    from steerlab.stats.correlation import correlate

    ok = ~np.isnan(x) & ~np.isnan(y)
    return fin(correlate(x[ok], y[ok], method)) if ok.sum() >= 3 else None  # type: ignore[arg-type]


def _stated_revealed(
    rows: Sequence[PrefRow], mu: dict[str, float], origin: dict[str, str], cfg: PrefsRevealedConfig
) -> list[StatedRevealed]:
    if not rows:
        return []
    stated = _stated(cfg, rows)
    frame = ratings_frame(rows)
    sampled = frame[frame["mode"] == "sample"]
    out = []
    for o in [*sorted({origin[i] for i in mu}), "all"]:
        items = [i for i in mu if o in ("all", origin[i])]
        m = np.array([mu[i] for i in items], dtype=float)
        s = np.array([stated.get(i, np.nan) for i in items], dtype=float)
        per_seed = []
        for _, part in sampled.groupby("seed"):
            vals = dict(zip(part["item"], part["value"]))
            r = _r(m, np.array([vals.get(i, np.nan) for i in items], dtype=float), "pearson")
            if r is not None:
                per_seed.append(r)
        out.append(
            StatedRevealed(
                origin=o,
                n=len(items),
                pearson=_r(m, s, "pearson"),
                spearman=_r(m, s, "spearman"),
                per_seed_mean=fin(np.mean(per_seed)) if per_seed else None,
                per_seed_sd=fin(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None,
                seeds=len(per_seed),
            )
        )
    return out
