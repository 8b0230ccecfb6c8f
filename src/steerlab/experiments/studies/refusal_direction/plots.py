"""Plots of a refusal-direction study: candidate heatmaps and before/after bars."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from steerlab.report.figures import save_figure


def _pyplot():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_candidate_heatmaps(
    candidates: Sequence[Any], selection: Any, n_layers: int, path: str | Path, *, title: str = ""
) -> Path:
    """Bypass, induce and KL of every candidate over (post-instruction position × layer).

    Candidates the filters drop (as applied, after any relaxation) are crossed out, the chosen
    one is starred, and the pruned late layers sit right of the dashed line. ``candidates`` are the summary's CandidateScore entries.
    """
    import numpy as np

    plt = _pyplot()
    positions = sorted({c.position for c in candidates})
    layers = sorted({c.layer for c in candidates})
    grid = {m: np.full((len(positions), len(layers)), np.nan) for m in ("bypass", "induce", "kl")}
    for c in candidates:
        for m in grid:
            grid[m][positions.index(c.position), layers.index(c.layer)] = getattr(c, m)
    fig, axes = plt.subplots(
        3, 1, figsize=(max(6.0, 0.42 * len(layers) + 2.5), 1.0 + 3 * (1.1 + 0.3 * len(positions))), squeeze=False
    )
    panels = [
        ("bypass", "bypass: refusal score, harmful, ablated (lower = refusal removed)", "viridis"),
        ("induce", "induce: refusal score, harmless, added (higher = refusal induced)", "magma"),
        ("kl", "KL on harmless under ablation (nats)", "cividis"),
    ]
    cut = int(n_layers * (1.0 - selection.prune_layer_fraction))  # first pruned layer
    for ax, (key, label, cmap) in zip(axes[:, 0], panels):
        im = ax.imshow(grid[key], aspect="auto", cmap=cmap, interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01)
        for c in candidates:
            y, x = positions.index(c.position), layers.index(c.layer)
            if c.chosen:
                ax.plot(x, y, marker="*", color="red", markersize=14, markeredgecolor="white")
            elif not c.eligible:
                ax.plot(x, y, marker="x", color="white", markersize=5, alpha=0.7)
        if selection.prune_layer_fraction > 0 and cut in layers:
            ax.axvline(layers.index(cut) - 0.5, color="white", linestyle="--", linewidth=1)
        ax.set_title(label, fontsize=9)
        ax.set_yticks(range(len(positions)), [str(p) for p in positions])
        ax.set_xticks(range(len(layers)), [str(x) for x in layers], fontsize=7)
        ax.set_ylabel("position")
    axes[-1, 0].set_xlabel("layer (× = filtered out, ★ = chosen, dashed = pruned late layers)")
    return save_figure(fig, path, title=title, title_size=10, rect=(0, 0, 1, 0.97) if title else None)


def plot_before_after(conditions: Sequence[Any], path: str | Path, *, title: str = "") -> Path:
    """Bars per intervention: refusal and unsafe rate on harmful prompts, over-refusal on harmless
    (and look-alike) prompts, with 95% Wilson intervals; and the KL cost beside them."""
    import numpy as np

    plt = _pyplot()
    metrics = [
        ("refusal", "refusal (harmful)"),
        ("unsafe", "unsafe (harmful)"),
        ("over_refusal", "over-refusal (harmless)"),
    ]
    if any(e.over_refusal_lookalike is not None for e in conditions):
        metrics.append(("over_refusal_lookalike", "over-refusal (look-alike)"))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 1]})
    x = np.arange(len(metrics))
    width = 0.8 / max(1, len(conditions))
    for k, e in enumerate(conditions):
        ests = [getattr(e, m) for m, _ in metrics]
        ys = [s.value if s is not None and s.value is not None else np.nan for s in ests]
        lo = [s.value - s.low if s is not None and s.value is not None else 0.0 for s in ests]
        hi = [s.high - s.value if s is not None and s.value is not None else 0.0 for s in ests]
        ax.bar(x + (k - (len(conditions) - 1) / 2) * width, ys, width, yerr=[lo, hi], capsize=3, label=e.condition)
    ax.set_xticks(x, [label for _, label in metrics], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("rate (95% Wilson)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    kl = [e.kl.value if e.kl.value is not None else np.nan for e in conditions]
    err = [
        [(e.kl.value - e.kl.low) if e.kl.value is not None else 0 for e in conditions],
        [(e.kl.high - e.kl.value) if e.kl.value is not None else 0 for e in conditions],
    ]
    ax2.bar(range(len(conditions)), kl, yerr=err, capsize=3, color="tab:gray")
    ax2.set_xticks(range(len(conditions)), [e.condition for e in conditions], rotation=30, fontsize=8)
    ax2.set_title("KL on harmless text (nats/token)", fontsize=9)
    ax2.grid(axis="y", alpha=0.3)
    return save_figure(fig, path, title=title, title_size=10)
