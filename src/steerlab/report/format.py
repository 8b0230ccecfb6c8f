"""Formatting numbers for reports: rates and means with their intervals, Markdown tables.

Every function takes plain values or any object with ``value``/``low``/``high`` attributes
(or keys), so reports of every study share one look and none depends on another's types.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def _get(est: Any, name: str) -> Any:
    return est.get(name) if isinstance(est, dict) else getattr(est, name, None)


def _with_interval(est: Any, fmt: Callable[[float], str], bracket: str) -> str:
    if est is None:
        return "–"
    if isinstance(est, (int, float)):
        return fmt(est)
    value, low, high = _get(est, "value"), _get(est, "low"), _get(est, "high")
    if value is None:
        return "–"
    if low is None or high is None:
        return fmt(value)
    return bracket.format(fmt(value), fmt(low).rstrip("%"), fmt(high).rstrip("%"))


def pct(est: Any, digits: int = 0) -> str:
    """``"42% [30, 55]"`` for an estimate with an interval, ``"42%"`` for a number, ``"–"`` for None."""
    return _with_interval(est, lambda x: f"{100 * x:.{digits}f}%", "{} [{}, {}]")


def num(est: Any, digits: int = 2) -> str:
    """``"0.71 [0.65, 0.77]"`` for an estimate with an interval, ``"–"`` when empty."""
    return _with_interval(est, lambda x: f"{x:.{digits}f}", "{} [{}, {}]")


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], align: Sequence[str] | None = None
) -> list[str]:
    """Lines of a Markdown table; ``align`` per column is ``"l"``, ``"r"`` or ``"c"`` (default left)."""
    marks = {"l": "---", "r": "---:", "c": ":---:"}
    align = align or ["l"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines
