"""Rich progress bars for long work; a no-op when output is not a terminal or STEERLAB_QUIET is set."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

ProgressFn = Callable[[int, int], None]


@contextmanager
def progress_bar(description: str) -> Iterator[ProgressFn]:
    """Yield a ``(done, total)`` callback that drives a rich progress bar.

    Example:
        >>> with progress_bar("extract") as bar:
        ...     extract(lm, pos, neg, layers, progress=bar)
    """
    if os.environ.get("STEERLAB_QUIET") or not sys.stderr.isatty():
        state = {"last": -1}

        def log(done: int, total: int) -> None:  # one line per ~10% when not on a terminal
            step = max(1, total // 10)
            if done == total or done // step != state["last"]:
                state["last"] = done // step
                if not os.environ.get("STEERLAB_QUIET"):
                    print(f"{description}: {done}/{total}", file=sys.stderr, flush=True)

        yield log
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), transient=False) as prog:
        task = prog.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        yield update
