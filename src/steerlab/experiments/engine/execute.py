"""Run a validated config in a run directory, and redraw a finished run's report.

execute(cfg, run_dir)   lock the directory, run the kind's flow, write summary.json, report.md, plots
render(run_dir)         report.md and plots again from config.yaml and summary.json alone
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from steerlab.errors import InputError
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
    try:
        store.start(cfg)
        summary = kind.flow(cfg, Run(kind.name, cfg, store, ex))
        store.write_json("summary.json", summary.model_dump(mode="json"))
        return kind.report(cfg, summary, store.root)
    finally:
        store.unlock()
        if owned:
            ex.close()


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
