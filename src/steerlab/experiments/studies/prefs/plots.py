"""Plots of the seed-004 preference studies (counterparts of the seed's figures).

Each function takes plain data (DataFrames or lists of numbers), writes one PNG and returns
its path; matplotlib is imported lazily through :mod:`steerlab.report.prefs_plots`'s Agg
figure helpers. The generic plots (seed-sensitivity bars, KL vs ICC, utilities by origin,
position bias) live there; these are the study-specific ones.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steerlab.report.prefs_plots import _figure, _save

ORIGIN_COLOURS = {"bailbench": "tab:red", "alpaca": "tab:blue", "wildchat": "tab:green", "math": "tab:purple"}
PathLike = str | os.PathLike[str]


def _colour(origin: str, k: int) -> str:
    return ORIGIN_COLOURS.get(origin, f"C{k % 10}")


def plot_grouped_bars(
    frame: pd.DataFrame,
    out: PathLike,
    *,
    group: str,
    bar: str,
    value: str,
    err: str | None = None,
    ylabel: str = "",
    title: str = "",
    ylim: tuple[float, float] | None = None,
) -> Path:
    """Bars of ``value`` for every (``group``, ``bar``) pair, groups along x (e.g. origin × template).

    Args:
        frame: Long frame with the group, bar, value (and optional error) columns; NaN values are gaps.
        out: PNG path.
        group: Column along the x axis.
        bar: Column of the bars within a group (one colour each).
        value: Bar heights.
        err: Optional error-bar column.
        ylabel: Axis label.
        title: Figure title.
        ylim: Optional y limits.
    """
    groups = list(dict.fromkeys(frame[group]))
    bars = list(dict.fromkeys(frame[bar]))
    fig = _figure(max(6.0, 1.2 * len(groups) * max(1, len(bars)) / 2), 4.0)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(bars))
    for k, b in enumerate(bars):
        part = frame[frame[bar] == b].set_index(group).reindex(groups)
        x = np.arange(len(groups)) - 0.4 + width * (k + 0.5)
        yerr = part[err].fillna(0).to_numpy() if err else None
        ax.bar(x, part[value].to_numpy(dtype=float), width, yerr=yerr, capsize=2, label=str(b), color=f"C{k % 10}")
    ax.set_xticks(np.arange(len(groups)), [str(g) for g in groups], rotation=20, ha="right")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out)


def plot_scale_use(entries: Sequence[Any], out: PathLike) -> Path:
    """One panel per condition: share of sampled ratings at each declared value (bars) and the
    mean answer-token distribution (dots), over the template's full declared scale.

    Args:
        entries: Objects with ``label``, ``values``, ``distribution`` and ``dist_mean``.
        out: PNG path.
    """
    n = max(1, len(entries))
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig = _figure(3.2 * cols, 2.6 * rows)
    for k, e in enumerate(entries, start=1):
        ax = fig.add_subplot(rows, cols, k)
        x = np.arange(len(e.values))
        if e.distribution:
            ax.bar(
                x,
                [v if v is not None else np.nan for v in e.distribution],
                color="tab:blue",
                alpha=0.6,
                label="sampled",
            )
        if e.dist_mean:
            ax.plot(
                x,
                [v if v is not None else np.nan for v in e.dist_mean],
                "o",
                color="tab:orange",
                ms=3,
                label="answer distribution",
            )
        step = max(1, len(x) // 8)
        ax.set_xticks(x[::step], [f"{v:g}" for v in e.values[::step]], fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(e.label, fontsize=8)
        if k == 1:
            ax.legend(fontsize=6)
    return _save(fig, out)


def plot_correlation_pairs(frame: pd.DataFrame, out: PathLike, *, label: str = "label") -> Path:
    """Cross-seed r on all items vs on informative (non-modal) items, with d annotated.

    Args:
        frame: Columns ``label``, ``seed_r``, ``informative_r``, ``discrimination``.
        out: PNG path.
        label: Column naming each condition.
    """
    fig = _figure(max(6.0, 0.9 * len(frame)), 4.0)
    ax = fig.add_subplot()
    x = np.arange(len(frame))
    ax.bar(x - 0.2, frame["seed_r"].astype(float), 0.4, label="all items")
    ax.bar(x + 0.2, frame["informative_r"].astype(float), 0.4, label="informative items")
    for i, d in enumerate(frame["discrimination"]):
        if d is not None and np.isfinite(d):
            ax.annotate(f"d={100 * d:.0f}%", (i, 0.02), ha="center", fontsize=7)
    ax.set_xticks(x, frame[label].astype(str), rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("mean cross-seed r")
    ax.set_ylim(
        min(0.0, float(np.nanmin(frame[["seed_r", "informative_r"]].astype(float).to_numpy(), initial=0)) - 0.1), 1.05
    )
    ax.legend(fontsize=8)
    return _save(fig, out)


def plot_origin_scatter(
    frame: pd.DataFrame, out: PathLike, *, x: str, y: str, xlabel: str, ylabel: str, title: str = ""
) -> Path:
    """Scatter of ``y`` against ``x``, one colour per origin (column ``origin``).

    Args:
        frame: Columns ``origin``, ``x`` and ``y`` (rows with NaN are skipped).
        out: PNG path.
        x: Column on the x axis.
        y: Column on the y axis.
        xlabel: x-axis label.
        ylabel: y-axis label.
        title: Figure title.
    """
    fig = _figure()
    ax = fig.add_subplot()
    data = frame.dropna(subset=[x, y])
    for k, (origin, part) in enumerate(data.groupby("origin", sort=True)):
        ax.scatter(part[x], part[y], s=18, alpha=0.8, color=_colour(str(origin), k), label=str(origin))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, out)


def plot_violin_grid(
    values: Mapping[tuple[str, str], Sequence[float]],
    rows: Sequence[str],
    cols: Sequence[str],
    out: PathLike,
    *,
    row_label: str,
    col_label: str,
    ylabel: str,
    ylim: tuple[float, float],
    title: str = "",
) -> Path:
    """A grid of violins: one panel per row value, one violin per column value in it.

    Seed 004's 3×3 system-prompt figure: rows = completion persona, columns = measurement context.

    Args:
        values: ``(row, col) -> values``; empty cells are left blank.
        rows: Row values in order (one panel each).
        cols: Column values in order (one violin each).
        out: PNG path.
        row_label: What the rows are.
        col_label: What the columns are.
        ylabel: Axis label of the values.
        ylim: y limits (the declared scale).
        title: Figure title.
    """
    fig = _figure(3.4 * len(rows), 3.4)
    for k, r in enumerate(rows, start=1):
        ax = fig.add_subplot(1, len(rows), k)
        data = [np.asarray(values.get((r, c), []), dtype=float) for c in cols]
        pos = [i + 1 for i, d in enumerate(data) if d.size > 1 and np.ptp(d) > 0]
        if pos:
            ax.violinplot([data[i - 1] for i in pos], positions=pos, showmeans=True)
        for i, d in enumerate(data, start=1):
            if d.size:
                ax.scatter(np.full(d.size, i) + np.linspace(-0.08, 0.08, d.size), d, s=6, color="k", alpha=0.5)
                ax.annotate(f"{d.mean():.2f}\nn={d.size}", (i, ylim[1]), ha="center", va="top", fontsize=7)
        ax.set_xticks(range(1, len(cols) + 1), [str(c) for c in cols], fontsize=8)
        ax.set_xlabel(col_label, fontsize=8)
        ax.set_ylim(ylim[0] - 0.2, ylim[1] + 0.2)
        ax.set_title(f"{row_label}: {r}", fontsize=9)
        if k == 1:
            ax.set_ylabel(ylabel)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, out)


def plot_heatmaps(
    matrices: Mapping[str, pd.DataFrame], out: PathLike, *, xlabel: str, ylabel: str, fmt: str = "{:.2f}"
) -> Path:
    """Side-by-side annotated heatmaps (e.g. mean, ICC and KL of rater × completer).

    Args:
        matrices: Title → square-ish frame (index = rows, columns = columns); NaN cells are blank.
        out: PNG path.
        xlabel: Column axis label.
        ylabel: Row axis label.
        fmt: Cell annotation format.
    """
    fig = _figure(3.8 * len(matrices), 3.4)
    for k, (title, m) in enumerate(matrices.items(), start=1):
        ax = fig.add_subplot(1, len(matrices), k)
        arr = m.to_numpy(dtype=float)
        im = ax.imshow(np.ma.masked_invalid(arr), cmap="viridis", aspect="auto")
        for (i, j), v in np.ndenumerate(arr):
            if np.isfinite(v):
                ax.text(j, i, fmt.format(v), ha="center", va="center", color="w", fontsize=8)
        ax.set_xticks(range(m.shape[1]), [str(c) for c in m.columns], rotation=25, ha="right", fontsize=7)
        ax.set_yticks(range(m.shape[0]), [str(i) for i in m.index], fontsize=7)
        ax.set_xlabel(xlabel, fontsize=8)
        if k == 1:
            ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, out)


def plot_sweep(
    frame: pd.DataFrame,
    out: PathLike,
    *,
    x: str,
    y: str,
    low: str,
    high: str,
    series: str,
    coherence: str | None = None,
    kept: str | None = None,
    xlabel: str = "",
    ylabel: str = "",
) -> Path:
    """A line per series of ``y`` (with its interval) against ``x``; optional second panel of
    coherence, with points of excluded x values hollow.

    Args:
        frame: Columns x, y, low, high, series (and coherence, kept).
        out: PNG path.
        x: Sweep variable (e.g. steering strength).
        y: Measured mean.
        low: Lower interval bound.
        high: Upper interval bound.
        series: One line per value (e.g. origin).
        coherence: Optional column with the coherence at each x (second panel).
        kept: Optional bool column: x values that pass the coherence filter.
        xlabel: x-axis label.
        ylabel: y-axis label.
    """
    fig = _figure(10.0 if coherence else 6.0, 4.0)
    ax = fig.add_subplot(1, 2 if coherence else 1, 1)
    for k, (name, part) in enumerate(frame.groupby(series, sort=True)):
        part = part.sort_values(x)
        c = _colour(str(name), k)
        ax.plot(part[x], part[y], "-", color=c, label=str(name))
        ax.fill_between(part[x].astype(float), part[low].astype(float), part[high].astype(float), color=c, alpha=0.15)
        if kept:
            ok = part[kept].astype(bool)
            ax.scatter(part[x][ok], part[y][ok], color=c, s=20)
            ax.scatter(part[x][~ok], part[y][~ok], facecolors="none", edgecolors=c, s=20)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    if coherence:
        ax2 = fig.add_subplot(1, 2, 2)
        pts = frame.drop_duplicates(x).sort_values(x)
        ax2.plot(pts[x], pts[coherence], "o-", color="k")
        ax2.set_xlabel(xlabel)
        ax2.set_ylabel("coherence of open-ended replies")
        ax2.set_ylim(0, 1)
    return _save(fig, out)


def plot_group_distributions(
    groups: Mapping[str, Sequence[float]], out: PathLike, *, ylabel: str, title: str = ""
) -> Path:
    """Box plots of values per group, points overlaid (e.g. rating of refused vs answered tasks).

    Args:
        groups: Group name → values (empty groups are shown as gaps).
        out: PNG path.
        ylabel: Axis label.
        title: Figure title.
    """
    names = list(groups)
    fig = _figure(max(5.0, 1.1 * len(names)), 4.0)
    ax = fig.add_subplot()
    data = [np.asarray(groups[n], dtype=float) for n in names]
    ax.boxplot([d if d.size else [np.nan] for d in data], tick_labels=names)
    for i, d in enumerate(data, start=1):
        ax.scatter(np.full(d.size, i) + np.linspace(-0.1, 0.1, max(d.size, 1))[: d.size], d, s=8, alpha=0.6, color="k")
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, out)
