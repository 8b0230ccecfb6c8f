"""Plots of an unsupervised A/B study: violins of per-question logit differences by method and scale.

One figure per vector group — ``all`` (every vector of a method, averaged per question),
``top{k}`` (the method's k best vectors, averaged) and ``rank{r}`` (the r-th best vector alone)
— with one panel per data set; at each scale, one violin per method. Drawn from the summary's
``Violin`` records only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from steerlab.report.figures import save_figure

COLOURS = {"melbo": "tab:blue", "power_iteration": "tab:orange", "random": "tab:grey"}
LABELS = {"melbo": "MELBO", "power_iteration": "power iteration", "random": "random"}


def _groups(model: Any) -> list[str]:
    seen: list[str] = []
    for ds in model.datasets.values():
        for v in ds.violins:
            if v.group not in seen:
                seen.append(v.group)
    return seen


def plot_violins(model: Any, group: str, path: str | Path, methods: Sequence[str], *, title: str = "") -> Path:
    """One figure: a panel per data set, violins of ``group`` per method at every scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(model.datasets)
    fig, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        ds = model.datasets[name]
        vs = [v for v in ds.violins if v.group == group and v.method in methods]
        scales = sorted({v.scale for v in vs})
        present = [m for m in methods if any(v.method == m for v in vs)]
        width = 0.8 / max(1, len(present))
        for j, method in enumerate(present):
            data = {v.scale: v.values for v in vs if v.method == method}
            pos = [i - 0.4 + width * (j + 0.5) for i, s in enumerate(scales) if data.get(s)]
            vals = [data[s] for s in scales if data.get(s)]
            if not vals:
                continue
            parts = ax.violinplot(vals, positions=pos, widths=width * 0.95, showmedians=True)
            for body in parts["bodies"]:
                body.set_facecolor(COLOURS.get(method, "tab:green"))
                body.set_alpha(0.55)
            for key in ("cmedians", "cmins", "cmaxes", "cbars"):
                if key in parts:
                    parts[key].set_color(COLOURS.get(method, "tab:green"))
            ax.plot([], [], color=COLOURS.get(method, "tab:green"), lw=6, alpha=0.55, label=LABELS.get(method, method))
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(scales)), [f"{s:g}" for s in scales])
        ax.set_xlabel("scale (negative = −v)")
        ax.set_ylabel(f"logit({ds.behavior}) − logit(other)")
        ax.set_title(f"{name} (n={ds.n_questions})")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path, title=title, dpi=100)


def violin_plots(model: Any, out_dir: str | Path, stem: str, methods: Sequence[str]) -> dict[str, str]:
    """Every group's figure for one model; returns group → file name (in ``out_dir``)."""
    out = {}
    for group in _groups(model):
        name = f"violins_{stem}_{group}.png"
        what = {"all": "all vectors (mean per question)"}.get(
            group,
            group.replace("top", "top-").replace("rank", "rank-")
            + " vector"
            + ("s (mean per question)" if group.startswith("top") else ""),
        )
        plot_violins(model, group, Path(out_dir) / name, methods, title=f"{stem}: {what}")
        out[group] = name
    return out
