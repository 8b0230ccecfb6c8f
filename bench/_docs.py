"""Helpers every benchmark shares: writing its section of docs/benchmarks.md, interleaved timing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(path: Path, heading: str, body: str) -> None:
    """Replace (or append) the section starting at ``heading`` up to the next ``## `` heading."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    start = text.find(f"\n{heading}\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + 1)
        text = text[: start + 1] + body + ("" if end < 0 else "\n" + text[end + 1 :])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def interleaved(fns: Sequence[tuple[str, Callable[[], object]]], rounds: int) -> dict[str, list]:
    """Call each named function once per round, alternating the order every round (so slow phases
    of a shared machine fall on both sides); returns each function's results by name."""
    out: dict[str, list] = {name: [] for name, _ in fns}
    for r in range(rounds):
        for name, fn in fns if r % 2 == 0 else list(reversed(fns)):
            out[name].append(fn())
    return out


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def write_json(path: Path, obj: object, indent: int = 2) -> None:
    """Write a benchmark's results file (creating ``bench/results/`` if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=indent) + "\n")
