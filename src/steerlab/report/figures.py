"""Finishing a pyplot figure the same way in every study's plots: title, layout, PNG, close."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def save_figure(
    fig: Any,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    title_size: float | None = None,
    dpi: int = 110,
    rect: tuple[float, float, float, float] | None = None,
) -> Path:
    """Add ``title`` (if any) above the axes, lay out (within ``rect``), write a PNG, close ``fig``.

    Returns the path written.
    """
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=title_size)
    fig.tight_layout(rect=rect)
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
