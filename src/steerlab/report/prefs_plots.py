"""Plots of preference results, drawn from results files or DataFrames only.

Each function takes a DataFrame (or a path to .csv / .json / .jsonl / .parquet), writes one
PNG and returns its path. matplotlib is imported inside the functions and used through its
object-oriented API with the Agg canvas, so importing this module is cheap and no global
backend is changed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from steerlab.errors import InputError
from steerlab.prefs._ratings import Scale

Source: TypeAlias = "pd.DataFrame | str | os.PathLike[str]"


def load_frame(source: Source, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """A DataFrame from a frame or a results file, checking required columns."""
    if isinstance(source, pd.DataFrame):
        frame = source
    else:
        path = Path(source)
        readers = {
            ".csv": pd.read_csv,
            ".json": pd.read_json,
            ".parquet": pd.read_parquet,
            ".jsonl": lambda p: pd.read_json(p, lines=True),
        }
        if path.suffix not in readers:
            raise InputError(f"{path}: unsupported results file type {path.suffix!r}")
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if path.suffix == ".parquet":
            import importlib.util

            if importlib.util.find_spec("pyarrow") is None:
                raise InputError(f"{path}: reading .parquet needs pyarrow: pip install 'steerlab[parquet]'")
        frame = readers[path.suffix](path)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(f"plot data is missing columns {missing}")
    return frame


def _figure(width: float = 6.0, height: float = 4.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, out: str | os.PathLike[str]) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, format="png")
    return out


def plot_utilities_by_origin(
    utilities: Source, out: str | os.PathLike[str], origins: Mapping[str, str] | None = None, kind: str = "box"
) -> Path:
    """Box or violin plot of fitted utilities (mu) per item origin.

    Args:
        utilities: Columns ``id``, ``mu`` and ``origin`` (or give ``origins``).
        out: PNG path.
        origins: Item id -> origin, used when the frame has no ``origin`` column.
        kind: ``"box"`` or ``"violin"``.
    """
    frame = load_frame(utilities, ("id", "mu"))
    if "origin" not in frame.columns:
        if origins is None:
            raise InputError("utilities need an 'origin' column or an origins mapping")
        frame = frame.assign(origin=frame["id"].map(origins))
    groups = sorted(frame["origin"].dropna().unique())
    data = [frame.loc[frame["origin"] == g, "mu"].to_numpy() for g in groups]
    fig = _figure()
    ax = fig.add_subplot()
    if kind == "violin":
        ax.violinplot(data, showmedians=True)
        ax.set_xticks(range(1, len(groups) + 1), groups)
    elif kind == "box":
        ax.boxplot(data, tick_labels=groups)
    else:
        raise InputError(f"kind must be 'box' or 'violin', got {kind!r}")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("utility μ")
    ax.set_title("Utilities by origin")
    return _save(fig, out)


def plot_kl_vs_icc(
    summary: Source, out: str | os.PathLike[str], label: str = "label", kl: str = "kl", icc: str = "icc"
) -> Path:
    """Scatter of KL from uniform (scale use) against ICC (reliability), one point per row.

    Args:
        summary: One row per template or model with label, KL and ICC columns.
        out: PNG path.
        label: Column naming each point.
        kl: Column with KL from uniform (raw or normalised).
        icc: Column with the ICC.
    """
    frame = load_frame(summary, (label, kl, icc))
    fig = _figure()
    ax = fig.add_subplot()
    ax.scatter(frame[kl], frame[icc])
    for _, row in frame.iterrows():
        ax.annotate(str(row[label]), (row[kl], row[icc]), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("KL from uniform (lower = fuller use of the scale)")
    ax.set_ylabel("ICC (higher = more reliable)")
    return _save(fig, out)


def plot_seed_sensitivity(summary: Source, out: str | os.PathLike[str], label: str = "label") -> Path:
    """Bars of mean cross-seed correlation with the spread over seed pairs as error bars.

    Args:
        summary: Columns ``label``, ``mean`` and ``std`` (e.g. from CrossSeedCorrelation).
        out: PNG path.
        label: Column naming each bar.
    """
    frame = load_frame(summary, (label, "mean", "std")).sort_values("mean", ascending=False)
    fig = _figure()
    ax = fig.add_subplot()
    x = np.arange(len(frame))
    ax.bar(x, frame["mean"], yerr=frame["std"].fillna(0), capsize=3)
    ax.set_xticks(x, frame[label].astype(str), rotation=30, ha="right")
    ax.set_ylabel("mean cross-seed r")
    ax.set_ylim(min(0.0, float(frame["mean"].min()) - 0.1), 1.05)
    return _save(fig, out)


def plot_rating_distributions(ratings: Source, scale: Scale, out: str | os.PathLike[str], facet: str = "rater") -> Path:
    """One histogram per ``facet`` value over the template's declared support.

    Args:
        ratings: Long ratings with ``value`` and the facet column (NaN values ignored).
        scale: Declared scale; every declared value gets a bar, used or not.
        out: PNG path.
        facet: Column splitting the panels (e.g. ``rater`` or ``template``).
    """
    frame = load_frame(ratings, ("value", facet))
    scale.check(frame["value"].to_numpy())
    names = sorted(frame[facet].astype(str).unique())
    fig = _figure(3.0 * max(len(names), 1), 3.0)
    values = np.asarray(scale.values)
    for k, name in enumerate(names, start=1):
        ax = fig.add_subplot(1, len(names), k)
        v = frame.loc[frame[facet].astype(str) == name, "value"].dropna().to_numpy()
        share = np.array([(v == x).mean() if v.size else 0.0 for x in values])
        ax.bar(np.arange(values.size), share)
        step = max(1, values.size // 10)
        ax.set_xticks(np.arange(values.size)[::step], [f"{x:g}" for x in values[::step]])
        ax.set_title(name, fontsize=9)
        ax.set_ylim(0, 1)
    return _save(fig, out)


def plot_position_bias(table: Source, out: str | os.PathLike[str]) -> Path:
    """Win rate when shown first vs second per group, with the rate expected from position.

    Args:
        table: Columns ``group``, ``win_rate_first``, ``win_rate_second`` and optionally
            ``expected_from_position`` (e.g. ``win_rate_by_position`` results as a frame).
        out: PNG path.
    """
    frame = load_frame(table, ("group", "win_rate_first", "win_rate_second"))
    fig = _figure()
    ax = fig.add_subplot()
    x = np.arange(len(frame))
    ax.bar(x - 0.2, frame["win_rate_first"], 0.4, label="shown first")
    ax.bar(x + 0.2, frame["win_rate_second"], 0.4, label="shown second")
    if "expected_from_position" in frame.columns:
        ax.scatter(
            x, frame["expected_from_position"], color="k", marker="_", s=400, label="expected from position", zorder=3
        )
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.set_xticks(x, frame["group"].astype(str))
    ax.set_ylabel("win rate")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return _save(fig, out)
