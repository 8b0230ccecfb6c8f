"""Plot of a refusal study: refusal and false-positive rates versus steering strength."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from steerlab.report.figures import save_figure


def plot_rates_vs_strength(table: Sequence[Any], path: str | Path, *, title: str = "") -> Path:
    """Two panels (harmful refusal, false positives) against strength, with and without the
    system prompt; strength 0 is the base / prompt-only condition. Error bars: 95% intervals
    (Wilson for rates, bootstrap for coherence). ``table`` holds the summary's condition entries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharex=True)
    metrics = [
        ("harmful_refusal", "harmful refusal"),
        ("false_positives", "false positives (benign refused)"),
        ("coherence", "coherence"),
    ]
    for system, colour, name in (
        (False, "tab:blue", "steering only"),
        (True, "tab:orange", "system prompt + steering"),
    ):
        entries = sorted(
            (e for e in table if e.system == system and e.condition != "cast" and e.coherence.value is not None),
            key=lambda e: e.strength,
        )
        xs = [e.strength for e in entries]
        for ax, (key, label) in zip(axes, metrics):
            ests = [getattr(e, key) for e in entries]
            ys = [x.value if x.value is not None else float("nan") for x in ests]
            lo = [x.value - x.low if x.value is not None else 0.0 for x in ests]
            hi = [x.high - x.value if x.value is not None else 0.0 for x in ests]
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", color=colour, label=name, capsize=3)
            ax.set_title(label)
            ax.set_xlabel("steering strength (0 = none)")
            ax.set_ylim(-0.05, 1.05)
            ax.grid(alpha=0.3)
    axes[0].set_ylabel("rate / score")
    axes[0].legend(loc="best", fontsize=8)
    return save_figure(fig, path, title=title)
