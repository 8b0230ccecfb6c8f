"""report.md and plots of the seed-004 preference studies, from their summaries alone.

One ``render_*`` function per kind; each writes its plots beside ``report.md`` and returns the
report's path. Nothing here imports ``steerlab.experiments``: the kinds pass their config and
summary objects in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from steerlab._io import atomic_write_text
from steerlab.report.format import markdown_table, num, pct


def _n(x: Any, digits: int = 2) -> str:
    """A number, or "–" for None/NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return num(float(x), digits)


def _models(cfg: Any) -> str:
    return ", ".join(f"`{m.name}`" + (f" ({m.id})" if m.id != m.name else "") for m in cfg.models)


def _write(out_dir: Path, lines: Sequence[str]) -> Path:
    path = Path(out_dir) / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _header(title: str, cfg: Any, summary: Any, definitions: str, blurb: str) -> list[str]:
    return [
        f"# {title}: {summary.name}",
        "",
        blurb,
        "",
        f"Models: {_models(cfg)}. Tasks: `{cfg.tasks.source}`"
        + (f", {cfg.tasks.n_per_origin} per origin" if cfg.tasks.n_per_origin else "")
        + ".",
        "",
        "Definitions:",
        "",
        "```",
        definitions,
        "```",
        "",
    ]


def _unparseable(e: Any) -> str:
    bad = sum(e.unparseable.values())
    if not e.n_answers:
        return "–"
    parts = ", ".join(f"{k} {v}" for k, v in sorted(e.unparseable.items()))
    return f"{bad}/{e.n_answers}" + (f" ({parts})" if parts else "")


def condition_table(entries: Sequence[Any]) -> list[str]:
    """The per-condition table of sampled reliability and one-pass scale use."""
    rows = [
        [
            e.label,
            e.n_items,
            _unparseable(e),
            _n(e.mean),
            f"{_n(e.seed_r)} ± {_n(e.seed_r_std)} ({e.seed_pairs})",
            _n(e.informative_r),
            pct(e.discrimination),
            _n(e.icc_a1),
            f"{_n(e.kl)} ({_n(e.kl_normalized)})",
            _n(e.dist_expected),
            _n(e.dist_expected_sd),
            _n(e.dist_entropy),
            pct(e.dist_scale_mass),
            _n(e.dist_kl),
        ]
        for e in entries
    ]
    header = [
        "condition",
        "items",
        "unparseable",
        "mean",
        "seed r ± sd (pairs)",
        "informative r",
        "d",
        "ICC(A,1)",
        "KL (norm.)",
        "E[rating]",
        "sd of E",
        "entropy",
        "scale mass",
        "KL of mean dist.",
    ]
    return markdown_table(header, rows, ["l"] + ["r"] * (len(header) - 1))


def _examples(entries: Sequence[Any]) -> list[str]:
    lines = []
    for e in entries:
        if e.unparseable_examples:
            lines.append(f"- {e.label}: " + "; ".join(f"`{x}`" for x in e.unparseable_examples))
    return ["Examples of unparseable replies:", "", *lines, ""] if lines else []


def render_stated(cfg: Any, summary: Any, out_dir: Path, definitions: str) -> Path:
    """report.md and plots of a ``prefs_stated`` run."""
    from steerlab.experiments.studies.prefs.plots import (
        plot_correlation_pairs,
        plot_grouped_bars,
        plot_origin_scatter,
        plot_scale_use,
    )
    from steerlab.report.prefs_plots import plot_kl_vs_icc, plot_seed_sensitivity

    out_dir = Path(out_dir)
    entries = summary.conditions
    frame = pd.DataFrame(
        [
            {
                "label": e.label,
                "mean": e.seed_r,
                "std": e.seed_r_std,
                "kl": e.kl,
                "icc": e.icc_a1,
                "seed_r": e.seed_r,
                "informative_r": e.informative_r,
                "discrimination": e.discrimination,
            }
            for e in entries
        ]
    ).astype({"mean": float, "std": float, "kl": float, "icc": float})
    plots = []
    sampled = frame.dropna(subset=["mean"])
    if len(sampled):
        plots.append(plot_seed_sensitivity(sampled, out_dir / "seed_sensitivity.png"))
        plots.append(plot_correlation_pairs(sampled, out_dir / "informative_correlation.png"))
    if len(frame.dropna(subset=["kl", "icc"])):
        plots.append(plot_kl_vs_icc(frame.dropna(subset=["kl", "icc"]), out_dir / "kl_vs_icc.png"))
    plots.append(plot_scale_use(entries, out_dir / "score_distributions.png"))
    by_origin = pd.DataFrame([o.model_dump() for o in summary.by_origin])
    if len(by_origin):
        by_origin["condition"] = (
            by_origin["rater"] + "/" + by_origin["template"] if len(cfg.models) > 1 else by_origin["template"]
        )
        plots.append(
            plot_grouped_bars(
                by_origin.astype({"r": float, "r_std": float}),
                out_dir / "seed_r_by_origin.png",
                group="origin",
                bar="condition",
                value="r",
                err="r_std",
                ylabel="mean cross-seed r",
                title="Stability by task origin",
            )
        )
    cons = pd.DataFrame([p.model_dump() for p in summary.consistency])
    if len(cons):
        plots.append(
            plot_origin_scatter(
                cons.astype({"consistency": float, "mean_normalized": float}),
                out_dir / "consistency_vs_mean.png",
                x="mean_normalized",
                y="consistency",
                xlabel="mean rating (scaled to 0-1)",
                ylabel="task consistency",
                title="Task consistency vs mean rating",
            )
        )
    lines = _header(
        "Stated ratings: reliability and scale use",
        cfg,
        summary,
        definitions,
        f"{summary.n_tasks} tasks, {summary.n_completions} completions "
        f"({summary.n_excluded} left out: empty or mentioning their system prompt). "
        f"{cfg.rating.seeds} sampled replies per (task, template) at temperature {cfg.rating.temperature:g}"
        + (", plus one answer distribution per (task, template) from one pass." if cfg.rating.distribution else "."),
    )
    lines += ["## Per condition", "", *condition_table(entries), "", *_examples(entries)]
    if len(by_origin):
        pivot = by_origin.pivot(index="condition", columns="origin", values="r")
        n_items = by_origin.groupby("origin")["n_items"].max()
        header = ["condition"] + [f"{o} (n={n_items[o]})" for o in pivot.columns]
        lines += [
            "## Cross-seed r by origin",
            "",
            *markdown_table(
                header,
                [[i] + [_n(v) for v in row] for i, row in zip(pivot.index, pivot.to_numpy())],
                ["l"] + ["r"] * len(pivot.columns),
            ),
            "",
        ]
    if len(cons):
        agg = (
            cons.astype({"consistency": float, "mean_normalized": float})
            .groupby("origin")
            .agg(n=("item", "size"), consistency=("consistency", "mean"), avg=("mean_normalized", "mean"))
        )
        lines += [
            "## Task consistency by origin",
            "",
            *markdown_table(
                ["origin", "items", "mean consistency", "mean rating (0-1)"],
                [[o, int(r.n), _n(r.consistency), _n(r.avg)] for o, r in agg.iterrows()],
                ["l", "r", "r", "r"],
            ),
            "",
        ]
    lines += ["## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots]]
    return _write(out_dir, lines)


def _est(e: Any) -> str:
    return f"{_n(e.value)} [{_n(e.low)}, {_n(e.high)}] ({e.n})" if e.n else "–"


def render_sysprompt(cfg: Any, summary: Any, out_dir: Path, definitions: str) -> Path:
    """report.md and violins of a ``prefs_sysprompt`` run."""
    from steerlab.experiments.studies.prefs.plots import plot_violin_grid

    out_dir = Path(out_dir)
    personas, contexts = list(cfg.personas), list(cfg.context_prompts)
    lo, hi = min(summary.scale), max(summary.scale)
    plots, lines = (
        [],
        _header(
            "System-prompt grid: completion persona × measurement context",
            cfg,
            summary,
            definitions,
            f"Template `{summary.template}`; ratings from the "
            f"{'answer-token distribution' if summary.source == 'distribution' else 'sampled replies'}.",
        ),
    )
    lines += [
        (
            f"**Context effect {_n(summary.context_effect)}** vs **completion effect "
            f"{_n(summary.completion_effect)}** (rating points; see definitions)."
        ),
        "",
    ]
    for origin in sorted({g.origin for g in summary.grid}):
        cells = {(g.persona, g.context): g for g in summary.grid if g.origin == origin}
        plots.append(
            plot_violin_grid(
                {k: g.values for k, g in cells.items()},
                personas,
                contexts,
                out_dir / f"sysprompt_grid_{origin}.png",
                row_label="persona",
                col_label="measurement context",
                ylabel=f"rating ({summary.template})",
                ylim=(lo, hi),
                title=f"{origin} tasks",
            )
        )
        rows = [[p] + [_est(cells[(p, c)].rating) if (p, c) in cells else "–" for c in contexts] for p in personas]
        lines += [
            f"## {origin} tasks: rating by persona (rows) × context (columns)",
            "",
            *markdown_table(["persona \\ context", *contexts], rows, ["l"] + ["r"] * len(contexts)),
            "",
        ]
        if summary.source == "distribution":
            rows = [
                [p]
                + [
                    f"{_est(cells[(p, c)].sampled)}, {cells[(p, c)].unparseable} unparseable"
                    if (p, c) in cells
                    else "–"
                    for c in contexts
                ]
                for p in personas
            ]
            lines += [
                "Sampled replies (parsed):",
                "",
                *markdown_table(["persona \\ context", *contexts], rows, ["l"] + ["r"] * len(contexts)),
                "",
            ]
    lines += [
        "## Mentions of the completion-time system prompt (reference confound)",
        "",
        *markdown_table(
            ["persona", "completions", "flagged", "examples"],
            [[m.persona, m.n, m.flagged, "; ".join(f"`{x}`" for x in m.examples) or "–"] for m in summary.mentions],
            ["l", "r", "r", "l"],
        ),
        "",
        "## Plots",
        "",
        *[f"![{p.stem}]({p.name})" for p in plots],
    ]
    return _write(out_dir, lines)


def render_self_cross(cfg: Any, summary: Any, out_dir: Path, definitions: str) -> Path:
    """report.md and heatmaps of a ``prefs_self_cross`` run."""
    from steerlab.experiments.studies.prefs.plots import plot_heatmaps

    out_dir = Path(out_dir)
    names = summary.agents

    def matrix(get: Any) -> pd.DataFrame:
        m = pd.DataFrame(index=names, columns=names, dtype=float)
        for c in summary.cells:
            v = get(c)
            m.loc[c.rater, c.completer] = float("nan") if v is None else v
        return m

    plot = plot_heatmaps(
        {
            "mean rating": matrix(lambda c: c.mean),
            "ICC(A,1)": matrix(lambda c: c.entry.icc_a1),
            "KL from uniform": matrix(lambda c: c.entry.kl),
        },
        out_dir / "self_cross_heatmaps.png",
        xlabel="completions by",
        ylabel="rated by",
    )
    agents = cfg.agent_list
    lines = _header(
        "Self vs cross rating",
        cfg,
        summary,
        definitions,
        f"Template `{summary.template}`. Agents: "
        + "; ".join(
            f"`{a.name}` = {a.model or cfg.models[0].name}"
            + (f", system prompt {a.system!r}" if a.system else "")
            + (
                f", steered at strength {a.strength:g} along the concept vector "
                f"({cfg.concept.positive!r} − {cfg.concept.negative!r})"
                if a.strength
                else ""
            )
            for a in agents
        )
        + ".",
    )
    lines += [
        "## Self vs cross",
        "",
        *markdown_table(
            ["metric", "self (mean ± sd, n)", "cross (mean ± sd, n)", "Mann-Whitney p"],
            [
                [
                    s.metric,
                    f"{_n(s.self_mean)} ± {_n(s.self_sd)} ({s.self_n})",
                    f"{_n(s.cross_mean)} ± {_n(s.cross_sd)} ({s.cross_n})",
                    _n(s.p_value, 3),
                ]
                for s in summary.self_vs_cross
            ],
            ["l", "r", "r", "r"],
        ),
        "",
        "## Every (rater, completer) cell",
        "",
        *condition_table([c.entry for c in summary.cells]),
        "",
        *_examples([c.entry for c in summary.cells]),
        "## Plots",
        "",
        f"![{plot.stem}]({plot.name})",
    ]
    return _write(out_dir, lines)


def render_refusal(cfg: Any, summary: Any, out_dir: Path, definitions: str) -> Path:
    """report.md and the rating-by-refusal plot of a ``prefs_refusal`` run."""
    from steerlab.experiments.studies.prefs.plots import plot_group_distributions

    out_dir = Path(out_dir)
    plots = []
    for model in dict.fromkeys(g.model for g in summary.groups):
        mine = [g for g in summary.groups if g.model == model and g.origin != "all"]
        data = {}
        for g in mine:
            data[f"{g.origin}\nrefused"] = g.refused_ratings
            data[f"{g.origin}\nanswered"] = g.answered_ratings
        plots.append(
            plot_group_distributions(
                data,
                out_dir / f"rating_by_refusal_{len(plots)}.png",
                ylabel=f"rating ({summary.template})",
                title=f"{model}: rating by refusal",
            )
        )
    rows = [
        [
            g.model,
            g.origin,
            g.n,
            pct(g.refusal_rate),
            _est(g.rating_refused),
            _est(g.rating_answered),
            _n(g.r_pb),
            _n(g.p_value, 3),
        ]
        for g in summary.groups
    ]
    lines = _header(
        "Refusal–preference correlation",
        cfg,
        summary,
        definitions,
        f"Template `{summary.template}`; each model rates its own completions.",
    )
    lines += [
        "## By origin",
        "",
        *markdown_table(
            ["model", "origin", "n", "refusal rate", "rating (refused)", "rating (answered)", "r_pb", "p"],
            rows,
            ["l", "l", "r", "r", "r", "r", "r", "r"],
        ),
        "",
    ]
    if summary.examples:
        lines += ["Refused completions (examples):", "", *[f"- `{x}`" for x in summary.examples], ""]
    lines += ["## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots]]
    return _write(out_dir, lines)


def render_steering(cfg: Any, summary: Any, out_dir: Path, definitions: str) -> Path:
    """report.md and sweep plots of a ``prefs_steering`` run."""
    from steerlab.experiments.studies.prefs.plots import plot_sweep, plot_violin_grid

    out_dir = Path(out_dir)
    plots = []
    frame = pd.DataFrame(
        [
            {
                "selector": p.selector,
                "strength": p.strength,
                "origin": p.origin,
                "rating": p.rating.value,
                "low": p.rating.low,
                "high": p.rating.high,
                "coherence": p.coherence.value,
                "kept": p.kept,
            }
            for p in summary.points
        ]
    )
    for sel in cfg.selectors:
        part = frame[frame["selector"] == sel].astype(
            {"rating": float, "low": float, "high": float, "coherence": float}
        )
        plots.append(
            plot_sweep(
                part,
                out_dir / f"steering_sweep_{sel}.png",
                x="strength",
                y="rating",
                low="low",
                high="high",
                series="origin",
                coherence="coherence",
                kept="kept",
                xlabel=f"strength (selector {sel}; hollow = below min coherence)",
                ylabel=f"rating ({summary.template})",
            )
        )
    strengths = [f"{s:g}" for s in cfg.strengths]
    plots.append(
        plot_violin_grid(
            {(sel, s): v for sel, d in summary.ratings.items() for s, v in d.items()},
            list(cfg.selectors),
            strengths,
            out_dir / "steering_violins.png",
            row_label="selector",
            col_label="strength",
            ylabel=f"rating ({summary.template})",
            ylim=(min(summary.scale), max(summary.scale)),
        )
    )
    lines = _header(
        "Concept-vector steering of stated ratings",
        cfg,
        summary,
        definitions,
        f"Concept vector {cfg.concept.positive!r} − {cfg.concept.negative!r} at layer {summary.layer}, "
        f"normalised to the mean activation norm; template `{summary.template}`; steered positions "
        f"`{cfg.positions}`; min coherence {cfg.min_coherence:g}.",
    )
    for s in summary.slopes:
        lines += [
            (
                f"## Selector `{s.selector}`: slope {_n(s.slope, 3)} rating points per unit strength "
                f"(kept strengths: {', '.join(f'{x:g}' for x in s.kept) or 'none'})"
            ),
            "",
        ]
        pts = [p for p in summary.points if p.selector == s.selector]
        origins = list(dict.fromkeys(p.origin for p in pts))
        rows = []
        for strength in cfg.strengths:
            at = {p.origin: p for p in pts if p.strength == strength}
            first = next(iter(at.values()), None)
            rows.append(
                [
                    f"{strength:g}",
                    *[_est(at[o].rating) if o in at else "–" for o in origins],
                    _est(first.coherence) if first else "–",
                    "yes" if first and first.kept else "no",
                    f"`{s.examples.get(f'{strength:g}', '')[:70]!r}`",
                ]
            )
        lines += markdown_table(
            ["strength", *origins, "coherence", "kept", "open-ended reply"],
            rows,
            ["r"] + ["r"] * len(origins) + ["r", "c", "l"],
        ) + [""]
    lines += ["## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots]]
    return _write(out_dir, lines)


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
        f"one pass per order ({cfg.pairwise.virtual_samples} virtual samples)"
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
        f"First-shown task chosen: **{pct(summary.first_position, 1)}** of {summary.first_position.n} comparisons "
        f"(binomial p = {_n(summary.first_position_p, 4)})"
        + (
            f"; mean P(first) {_n(summary.mean_p_first, 3)}, mean P(A)+P(B) {pct(summary.letter_mass)}"
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
                ["origin", "n", "Pearson r", "Spearman ρ", "per-seed r (mean ± sd, seeds)"],
                [
                    [
                        s.origin,
                        s.n,
                        _n(s.pearson),
                        _n(s.spearman),
                        f"{_n(s.per_seed_mean)} ± {_n(s.per_seed_sd)} ({s.seeds})",
                    ]
                    for s in summary.stated_revealed
                ],
                ["l", "r", "r", "r", "r"],
            ),
            "",
        ]
    lines += ["## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots]]
    return _write(out_dir, lines)
