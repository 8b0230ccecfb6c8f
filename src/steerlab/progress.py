"""Rich progress bars for long work: one implementation for the engine, the library and the CLI.

By default a bar that is not on a terminal becomes one plain line per ~10% on stderr, and
``STEERLAB_QUIET`` silences it; the CLI asks for a transient bar on its own console instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

ProgressFn = Callable[[int, int], None]


@contextmanager
def progress_bar(
    description: str, *, transient: bool = False, console: Console | None = None, plain_when_piped: bool = True
) -> Iterator[ProgressFn]:
    """Yield a ``(done, total)`` callback that drives a rich progress bar.

    Args:
        description: the bar's label.
        transient: remove the bar when done (the CLI's spinner-like bars).
        console: the rich console to draw on (default: rich's own).
        plain_when_piped: when stderr is not a terminal or ``STEERLAB_QUIET`` is set, print one
            line per ~10% (none if quiet) instead of a bar; False always draws the rich bar.

    Example:
        >>> with progress_bar("extract") as bar:
        ...     extract(lm, pos, neg, layers, progress=bar)
    """
    if plain_when_piped and (os.environ.get("STEERLAB_QUIET") or not sys.stderr.isatty()):
        state = {"last": -1}

        def log(done: int, total: int) -> None:  # one line per ~10% when not on a terminal
            step = max(1, total // 10)
            if done == total or done // step != state["last"]:
                state["last"] = done // step
                if not os.environ.get("STEERLAB_QUIET"):
                    print(f"{description}: {done}/{total}", file=sys.stderr, flush=True)

        yield log
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if not transient:
        columns.append(TimeRemainingColumn())
    with Progress(*columns, console=console, transient=transient) as prog:
        task = prog.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        yield update
