"""Run a validated config in a run directory, and redraw a finished run's report.

execute(cfg, run_dir)   lock the directory, run the kind's flow, write summary.json, report.md, plots
render(run_dir)         report.md and plots again from config.yaml and summary.json alone

A run that cannot go on — interrupted (SIGINT, or SIGTERM delivered as
:class:`~steerlab.errors.Signalled`), a disk that filled up, a Ray cluster with no worker
left — raises :class:`~steerlab.errors.RunStopped`: one line saying what happened, how many
cells of the stage under way are saved, and that rerunning the same command resumes.
"""

from __future__ import annotations

import errno
import json
import signal
from pathlib import Path

from pydantic import ValidationError

from steerlab.errors import InputError, Interrupted, RunStopped, WorkersLost
from steerlab.experiments.engine.config import ExperimentConfig
from steerlab.experiments.engine.executors import Executor, make_executor
from steerlab.experiments.engine.loading import load_config
from steerlab.experiments.engine.registry import get_kind
from steerlab.experiments.engine.run import Run
from steerlab.experiments.engine.store import RunStore


def execute(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    *,
    executor: str | Executor = "local",
    address: str | None = None,
    actors: int | None = None,
) -> Path:
    """Run (or resume) ``cfg`` in ``run_dir``; returns the path of ``report.md``.

    ``executor`` is ``"local"``, ``"ray"`` (with ``address``/``actors``), or an executor object
    the caller made (and closes).
    """
    kind = get_kind(cfg.kind)()
    store = RunStore(run_dir)
    owned = isinstance(executor, str)
    ex = make_executor(executor, address=address, actors=actors) if isinstance(executor, str) else executor
    run: Run | None = None
    try:
        store.start(cfg)
        run = Run(kind.name, cfg, store, ex)
        summary = kind.flow(cfg, run)
        store.write_json("summary.json", summary.model_dump(mode="json"))
        return kind.report(cfg, summary, store.root)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM through the CLI's handler
        raise Interrupted(getattr(e, "signum", signal.SIGINT), str(store.root), *_saved(run)) from None
    except WorkersLost as e:
        raise RunStopped(str(e), str(store.root), *_saved(run)) from None
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        what = (e.strerror or "cannot write").lower()
        raise RunStopped(f"{what} ({e.filename or store.root})", str(store.root), *_saved(run)) from None
    finally:
        store.unlock()
        if owned:
            ex.close()


#: Errors of a file system that cannot take more writes: they stop a run with one line.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def _saved(run: Run | None) -> tuple[str | None, int | None, int | None]:
    """(stage, cells saved, cells in all) of the stage under way; Nones before the first stage."""
    return (None, None, None) if run is None else run.saved()


def render(run_dir: str | Path) -> Path:
    """Re-render report.md and plots of a finished run from ``config.yaml`` and ``summary.json`` alone."""
    root = Path(run_dir)
    for name in ("config.yaml", "summary.json"):
        if not (root / name).is_file():
            raise InputError(f"{root}: no {name}; is this a finished steerlab run directory?")
    cfg = load_config(root / "config.yaml")
    kind = get_kind(cfg.kind)()
    try:
        raw = json.loads((root / "summary.json").read_text(encoding="utf-8"))
        summary = kind.Summary.model_validate(raw)
    except (json.JSONDecodeError, ValidationError) as e:
        raise InputError(f"{root / 'summary.json'}: not a {kind.name} summary of this steerlab version ({e})") from None
    return kind.report(cfg, summary, root)
