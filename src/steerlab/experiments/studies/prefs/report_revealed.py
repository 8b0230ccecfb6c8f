"""Report of the revealed-preference study (seed 004): utilities, position bias, stated vs revealed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from steerlab.experiments.studies.prefs.report import (
    _est,
    _header,
    _n,
    _write,
)
from steerlab.report.format import markdown_table, pct


def render_revealed(cfg: Any, summary: Any, out_dir: Path, definitions: str) -> Path:
    """report.md and plots of a ``prefs_revealed`` run."""
    from steerlab.experiments.studies.prefs.plots import plot_origin_scatter
    from steerlab.report.prefs_plots import plot_position_bias, plot_utilities_by_origin

    out_dir = Path(out_dir)
    util = pd.DataFrame([u.model_dump() for u in summary.utilities]).rename(columns={"item": "id"})
    plots = [plot_utilities_by_origin(util, out_dir / "utilities_by_origin.png", kind="box")]
    if summary.position:
        plots.append(
            plot_position_bias(
                pd.DataFrame([p.model_dump() for p in summary.position]).astype(
                    {"win_rate_first": float, "win_rate_second": float, "expected_from_position": float}
                ),
                out_dir / "position_bias.png",
            )
        )
    if util["stated"].notna().sum() >= 2:
        plots.append(
            plot_origin_scatter(
                util.astype({"stated": float}),
                out_dir / "stated_vs_revealed.png",
                x="stated",
                y="mu",
                xlabel="stated rating (expected)",
                ylabel="utility μ",
                title="Stated vs revealed",
            )
        )
    util["refusal"] = util["refused"].map({True: "refused", False: "answered"})
    plots.append(
        plot_origin_scatter(
            util.assign(r=util["refused"].astype(float) + 0.0),
            out_dir / "mu_by_refusal.png",
            x="r",
            y="mu",
            xlabel="completion refused (0 = no, 1 = yes)",
            ylabel="utility μ",
            title="Utility by refusal",
        )
    )
    how = (
        "one pass per order (one fractional comparison each)"
        if summary.mode == "dist"
        else f"{cfg.pairwise.samples} sampled replies per order" + (" with reasoning" if cfg.pairwise.reasoning else "")
    )
    lines = _header(
        "Revealed preferences: active learning with the model as the oracle",
        cfg,
        summary,
        definitions,
        f"Template `{summary.template}`, choices read from {how}. {summary.n_tasks} tasks, "
        f"{summary.n_pairs} pairs (each in both orders: {summary.n_choice_cells} cells, "
        f"{summary.unparseable} unparseable comparisons); stop reason: `{summary.stop_reason}`.",
    )
    lines += [
        "## Utilities by origin",
        "",
        *markdown_table(
            ["origin", "tasks", "mean μ [95% CI]"],
            [[o.origin, o.n, _est(o.mu)] for o in summary.by_origin],
            ["l", "r", "r"],
        ),
        "",
        "## Active-learning rounds",
        "",
        *markdown_table(
            ["round", "pairs", "comparisons", "Spearman vs previous fit", "held-out accuracy", "held-out NLL"],
            [
                [h.round, h.pairs, h.comparisons, _n(h.spearman_prev, 3), pct(h.held_out_accuracy), _n(h.held_out_nll)]
                for h in summary.history
            ],
            ["r"] * 6,
        ),
        "",
        "## Position bias",
        "",
        (
            f"First-shown task chosen: **{pct(summary.first_position, 1)}** of {summary.first_position.n} comparisons "
            f"(binomial p = {_n(summary.first_position_p, 4)})"
            if summary.first_position_unit == "comparisons"
            else f"Mean P(first-shown) over {summary.first_position.n} pairs asked both ways (each pair's two "
            f"orders averaged; 50% = no position bias): **{pct(summary.first_position, 1)}** (bootstrap over "
            f"pairs; t-test vs 50%: p = {_n(summary.first_position_p, 4)})"
        )
        + (
            f"; mean P(first) over all {summary.n_choice_cells} cells {_n(summary.mean_p_first, 3)}, "
            f"mean P(A)+P(B) {pct(summary.letter_mass)}"
            if summary.mean_p_first is not None
            else ""
        )
        + f". Order consistency: {pct(summary.order_consistency)} of {summary.order_pairs} pairs.",
        "",
    ]
    if summary.position:
        lines += markdown_table(
            ["origin", "n", "win rate", "shown first", "shown second", "expected from position", "content effect"],
            [
                [
                    p.group,
                    p.n,
                    pct(p.win_rate),
                    pct(p.win_rate_first),
                    pct(p.win_rate_second),
                    pct(p.expected_from_position),
                    f"{_n(p.content_effect, 3)}",
                ]
                for p in summary.position
            ],
            ["l"] + ["r"] * 6,
        ) + [""]
    lines += [
        "## Refusal and utility",
        "",
        *markdown_table(
            ["origin", "n", "refusal rate", "μ (refused)", "μ (answered)", "r_pb", "p"],
            [
                [
                    g.origin,
                    g.n,
                    pct(g.refusal_rate),
                    _est(g.rating_refused),
                    _est(g.rating_answered),
                    _n(g.r_pb),
                    _n(g.p_value, 3),
                ]
                for g in summary.refusal
            ],
            ["l"] + ["r"] * 6,
        ),
        "",
    ]
    if summary.stated_revealed:
        lines += [
            "## Stated vs revealed",
            "",
            *markdown_table(
                [
                    "origin",
                    "tasks",
                    "n (μ and stated)",
                    "Pearson r [95% CI]",
                    "Spearman ρ [95% CI]",
                    "per-seed r (mean ± sd, seeds)",
                ],
                [
                    [
                        s.origin,
                        s.n,
                        s.n_pairs,
                        f"{_n(s.pearson)} [{_n(s.pearson_low)}, {_n(s.pearson_high)}]",
                        f"{_n(s.spearman)} [{_n(s.spearman_low)}, {_n(s.spearman_high)}]",
                        f"{_n(s.per_seed_mean)} ± {_n(s.per_seed_sd)} ({s.seeds})",
                    ]
                    for s in summary.stated_revealed
                ],
                ["l"] + ["r"] * 5,
            ),
            "",
        ]
    lines += ["## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots]]
    return _write(out_dir, lines)
