"""Reports of the comparison studies of seed 004: self vs cross rating, refusal vs preference, concept steering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from steerlab.experiments.studies.prefs.report import (
    _est,
    _examples,
    _header,
    _n,
    _write,
    condition_table,
)
from steerlab.report.format import markdown_table, pct


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

    def n_range(get: Any) -> str:
        ns = [int(get(c)) for c in summary.cells]
        return f"n = {min(ns)}" if min(ns) == max(ns) else f"n = {min(ns)}–{max(ns)}"

    plot = plot_heatmaps(
        {
            f"mean rating ({n_range(lambda c: c.entry.dist_n or c.entry.n_parsed)} per cell)": matrix(lambda c: c.mean),
            f"ICC(A,1) ({n_range(lambda c: c.entry.icc_n)} items/cell)": matrix(lambda c: c.entry.icc_a1),
            f"KL from uniform ({n_range(lambda c: c.entry.n_parsed)} ratings/cell)": matrix(lambda c: c.entry.kl),
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
