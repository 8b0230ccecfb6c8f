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


def _interval(bounds: Sequence[float | None]) -> str:
    """`` [low, high]`` when both bounds are defined, else nothing."""
    return f" [{_n(bounds[0])}, {_n(bounds[1])}]" if all(b is not None for b in bounds) else ""


def condition_table(entries: Sequence[Any]) -> list[str]:
    """The per-condition table of sampled reliability and one-pass scale use."""
    rows = [
        [
            e.label,
            e.n_items,
            _unparseable(e),
            f"{_n(e.mean)} ({e.n_parsed})",
            f"{_n(e.seed_r)} ± {_n(e.seed_r_std)} ({e.seed_pairs})",
            f"{_n(e.informative_r)} ({e.informative_n})",
            f"{pct(e.discrimination)} ({e.discrimination_n})",
            f"{_n(e.icc_a1)}{_interval(e.icc_a1_ci)} ({e.icc_n})",
            f"{_n(e.kl)} ({_n(e.kl_normalized)}; {e.n_parsed})",
            f"{_n(e.dist_expected)} ({e.dist_n})",
            _n(e.dist_expected_sd),
            _n(e.dist_entropy),
            pct(e.dist_scale_mass),
            f"{_n(e.dist_kl)} ({e.dist_n})",
        ]
        for e in entries
    ]
    header = [
        "condition",
        "items",
        "unparseable",
        "mean (n ratings)",
        "seed r ± sd (seed pairs)",
        "informative r (n items)",
        "d (n items)",
        "ICC(A,1) [95% CI] (n items)",
        "KL (norm.; n ratings)",
        "E[rating] (n items)",
        "sd of E",
        "entropy",
        "scale mass",
        "KL of mean dist. (n items)",
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
                "label": f"{e.label} (n={e.icc_n or e.n_items})",
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
    plots: list[Path] = []
    left_out: list[tuple[str, str]] = []
    sampled = frame.dropna(subset=["mean"])
    if len(sampled):
        plots.append(plot_seed_sensitivity(sampled, out_dir / "seed_sensitivity.png"))
        plots.append(plot_correlation_pairs(sampled, out_dir / "informative_correlation.png"))
    else:
        left_out += [
            (n, "no condition has a cross-seed r") for n in ("seed_sensitivity.png", "informative_correlation.png")
        ]
    if len(frame.dropna(subset=["kl", "icc"])):
        plots.append(plot_kl_vs_icc(frame.dropna(subset=["kl", "icc"]), out_dir / "kl_vs_icc.png"))
    else:
        left_out.append(("kl_vs_icc.png", "no condition has both a KL and an ICC"))
    plots.append(plot_scale_use(entries, out_dir / "score_distributions.png"))
    by_origin = pd.DataFrame([o.model_dump() for o in summary.by_origin])
    if len(by_origin):
        by_origin["condition"] = (
            by_origin["rater"] + "/" + by_origin["template"] if len(cfg.models) > 1 else by_origin["template"]
        )
    drawable = by_origin.dropna(subset=["r"]) if len(by_origin) else by_origin
    if len(by_origin) and not len(drawable):
        left_out.append(("seed_r_by_origin.png", "no origin has a cross-seed r (too few shared items per seed pair)"))
    if len(drawable):
        drawable = drawable.assign(origin=drawable["origin"] + " (n=" + drawable["n_items"].astype(str) + ")")
        plots.append(
            plot_grouped_bars(
                drawable.astype({"r": float, "r_std": float}),
                out_dir / "seed_r_by_origin.png",
                group="origin",
                bar="condition",
                value="r",
                err="r_std",
                ylabel="mean cross-seed r",
                title="Stability by task origin (n = items per origin)",
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
                title=f"Task consistency vs mean rating (n = {len(cons)} items)",
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
    lines += ["## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots], *_left_out(left_out)]
    return _write(out_dir, lines)


def _left_out(left_out: Sequence[tuple[str, str]]) -> list[str]:
    """Report lines naming the plots that were not drawn, and why (a plot with no data is not drawn)."""
    if not left_out:
        return []
    return ["", "Plots left out (no data to draw):", "", *[f"- `{name}`: {why}" for name, why in left_out]]


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
                title=f"{origin} tasks (n = {min(len(g.values) for g in cells.values())}–"
                f"{max(len(g.values) for g in cells.values())} ratings per cell)",
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
