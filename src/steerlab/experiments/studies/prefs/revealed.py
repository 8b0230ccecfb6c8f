"""Seed 004's revealed preferences: the model as the oracle of active learning, utilities by
origin, position bias, refusal–utility and stated–revealed correlation.

The flow (:meth:`PrefsRevealed.flow`), for the (first) model:
  1. complete — the model answers every task; replies get the refusal-marker verdict
  2. choose   — :func:`steerlab.prefs.run_active_learning` asks for pairs (a random regular
                graph, a held-out set, then rounds of informative pairs among *sampled*
                candidates, never all N² pairs); each pair is asked in BOTH orders. A choice is
                read from one pass (``mode: dist``: P(A), P(B) → one fractional comparison
                per order, P(first) wins for the first-shown task) or from ``samples`` sampled replies (``mode: sample``,
                optionally reasoning first and ending with "Answer: A/B"). Every round is one
                ``run.cells`` call, so a resumed run replays the loop from the rows on disk
  3. rate     — (optional) stated ratings of the same completions, for stated–revealed
  4. summarise — utilities μ by origin, active-learning history (held-out accuracy), position
                bias (first-position rate, order consistency, win rate by position per origin),
                refusal–μ point-biserial by origin, stated–revealed correlation
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from steerlab.errors import InputError
from steerlab.experiments.engine.registry import register_kind
from steerlab.experiments.engine.run import Run
from steerlab.experiments.studies.prefs.common import (
    choice_cell,
    completion_cells,
    load_study_tasks,
    rating_cells,
    usable,
)
from steerlab.experiments.studies.prefs.records import PrefRow
from steerlab.experiments.studies.prefs.revealed_config import PrefsRevealedConfig
from steerlab.experiments.studies.prefs.revealed_summary import (
    PrefsRevealedSummary,
    oriented_counts,
    summarise,
)
from steerlab.experiments.studies.prefs.stages import CHOOSE, COMPLETE, RATE, PrefsKind

DEFINITIONS = """\
choice (dist)     P(first) = P(A) / (P(A) + P(B)) from one pass; one fractional comparison per order:
                  P(first) wins for the first-shown task, 1 − P(first) for the other (nothing rounded)
choice (sample)   `samples` sampled replies per order, parsed (unparseable replies are counted, not fitted)
μ                 Thurstonian utility (steerlab.prefs.fit_thurstonian, λ as configured), mean zero
held-out acc.     share of held-out comparisons whose winner had predicted P > 0.5
first-position    sample: share of comparisons won by the task shown first (A), Wilson 95% interval,
rate              exact binomial p against 0.5. dist: mean P(first) over pairs asked both ways (a pair's
                  two orders averaged: 0.5 without position bias), bootstrap interval over pairs,
                  one-sample t-test against 0.5, n = pairs. Order consistency = share of pairs whose
                  winner (the larger share, by task) is the same in both orders
position split    win rate of an origin's tasks when shown first / second, and the part of its win rate
                  expected from position alone (steerlab.prefs.position_decomposition)
refusal–μ         point-biserial r between the refusal-marker verdict of a task's completion and its μ
stated–revealed   Pearson and Spearman r between μ and the stated rating (expected rating of the
                  answer distribution; per seed for sampled ratings, then mean ± sd over seeds)"""


@register_kind
class PrefsRevealed(PrefsKind):
    """Revealed preferences (see the module docstring)."""

    name = "prefs_revealed"
    Config = PrefsRevealedConfig
    Summary = PrefsRevealedSummary

    def report(self, cfg: PrefsRevealedConfig, summary: PrefsRevealedSummary, out_dir: Path) -> Path:
        from steerlab.experiments.studies.prefs.report_revealed import render_revealed

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
        per_pair = 2 * (p.samples if p.mode == "sample" else 1)
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
