"""Tasks for preference studies: a prompt with an origin label (the data set it came from).

    load_tasks("shipped:pref_tasks")     48 tasks written for steerlab, 12 per origin
    load_tasks("my_tasks.jsonl")         a user file (.jsonl, or .csv with a header): id, origin, prompt
    select_tasks(tasks, n_per_origin=6)  a balanced subset, the first N of each origin in file order

The shipped set's datasheet is ``src/steerlab/data/pref_tasks.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from steerlab.errors import InputError

SHIPPED_TASK_SETS: tuple[str, ...] = ("pref_tasks",)


@dataclass(frozen=True)
class Task:
    """One task a model completes and then rates or compares.

    Attributes:
        id: Unique id (``"math-03"``).
        origin: Source label used for per-origin breakdowns (``"math"``).
        prompt: The task as the user would type it.
    """

    id: str
    origin: str
    prompt: str


def _read(path: Path, id_col: str, origin_col: str, prompt_col: str) -> list[Task]:
    from steerlab.data.loaders import (
        _iter_rows,  # JSONL/CSV rows with line numbers, errors naming them
    )

    tasks: list[Task] = []
    for n, row in _iter_rows(path):
        missing = [c for c in (id_col, origin_col, prompt_col) if c not in row]
        if missing:
            raise InputError(f"{path}:{n}: missing field(s) {missing}")
        values = [row[c] for c in (id_col, origin_col, prompt_col)]
        if not all(isinstance(v, str) and v.strip() for v in values):
            raise InputError(f"{path}:{n}: {id_col}, {origin_col} and {prompt_col} must be non-empty strings")
        tasks.append(Task(values[0].strip(), values[1].strip(), values[2].strip()))
    if not tasks:
        raise InputError(f"{path}: no tasks")
    seen: set[str] = set()
    for t in tasks:
        if t.id in seen:
            raise InputError(f"{path}: duplicate task id {t.id!r}")
        seen.add(t.id)
    return tasks


def load_tasks(
    source: str, *, id_col: str = "id", origin_col: str = "origin", prompt_col: str = "prompt"
) -> list[Task]:
    """Tasks from ``shipped:NAME`` or a JSONL/CSV file.

    Args:
        source: ``"shipped:pref_tasks"`` or a path to a ``.jsonl`` or ``.csv`` file.
        id_col: Field holding the task id.
        origin_col: Field holding the origin label.
        prompt_col: Field holding the task text.

    Example:
        >>> tasks = load_tasks("shipped:pref_tasks")
        >>> sorted({t.origin for t in tasks})
        ['alpaca', 'bailbench', 'math', 'wildchat']
    """
    if source.startswith("shipped:"):
        name = source.split(":", 1)[1]
        if name not in SHIPPED_TASK_SETS:
            raise InputError(f"unknown shipped task set {name!r}; shipped: {', '.join(SHIPPED_TASK_SETS)}")
        path = Path(str(resources.files("steerlab.data").joinpath(f"{name}.jsonl")))
        return _read(path, "id", "origin", "prompt")
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{path}: no such task file")
    return _read(path, id_col, origin_col, prompt_col)


def select_tasks(
    tasks: Sequence[Task], *, n_per_origin: int | None = None, origins: Sequence[str] | None = None
) -> list[Task]:
    """The first ``n_per_origin`` tasks of each origin (file order), optionally only some origins.

    Args:
        tasks: All tasks.
        n_per_origin: Tasks kept per origin (None = all).
        origins: Origins kept (None = all); an unknown origin is an InputError.
    """
    known = list(dict.fromkeys(t.origin for t in tasks))
    if origins is not None:
        unknown = [o for o in origins if o not in known]
        if unknown:
            raise InputError(f"no tasks of origin(s) {unknown}; origins present: {', '.join(known)}")
    keep = list(origins) if origins is not None else known
    count: dict[str, int] = {}
    out = []
    for t in tasks:
        if t.origin in keep and (n_per_origin is None or count.get(t.origin, 0) < n_per_origin):
            out.append(t)
            count[t.origin] = count.get(t.origin, 0) + 1
    return out
