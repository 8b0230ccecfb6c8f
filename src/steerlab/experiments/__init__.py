"""Experiments as data: a YAML config → a run directory, on the local or the Ray executor.

    run_experiment(config.yaml, run_dir)   validate, run or resume, write summary and report
    render_report(run_dir)                  redraw report.md and plots from summary.json + config.yaml
    demo()                                  the refusal study on the default model (``make demo``)

The engine (:mod:`~steerlab.experiments.engine.run`) runs any registered experiment kind
(:mod:`~steerlab.experiments.engine.registry`); each study is one module defining one kind.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from steerlab.experiments.engine.config import ExperimentConfig
from steerlab.experiments.engine.loading import load_config, parse_config
from steerlab.experiments.engine.registry import ExperimentKind, get_kind, known_kinds, register_kind

DEMO_CONFIG = Path(__file__).parent / "configs" / "demo.yaml"

__all__ = [
    "DEMO_CONFIG",
    "ExperimentConfig",
    "ExperimentKind",
    "demo",
    "get_kind",
    "known_kinds",
    "load_config",
    "parse_config",
    "register_kind",
    "render_report",
    "run_experiment",
]


def _default_run_dir(name: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{name}-{stamp}"


def run_experiment(
    config_path: str | Path,
    run_dir: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    executor: str = "local",
    address: str | None = None,
    actors: int | None = None,
) -> Path:
    """Validate the config, run (or resume, if ``run_dir`` holds it) the experiment; returns the report path.

    Args:
        config_path: the YAML config.
        run_dir: where the run lives (default ``runs/<name>-<timestamp>``).
        overrides: ``key.path=value`` strings applied before validation.
        executor: ``local`` (default) or ``ray``.
        address: Ray cluster address (``auto``, ``ray://host:port``; None starts Ray locally).
        actors: number of Ray workers (default: one per GPU, else one per CPU).
    """
    from steerlab.experiments.engine.execute import execute

    cfg = load_config(config_path, overrides)
    return execute(cfg, run_dir or _default_run_dir(cfg.name), executor=executor, address=address, actors=actors)


def render_report(run_dir: str | Path) -> Path:
    """Re-render ``report.md`` and plots from a run's ``config.yaml`` and ``summary.json`` alone."""
    from steerlab.experiments.engine.execute import render

    return render(run_dir)


def demo(
    run_dir: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    executor: str = "local",
    address: str | None = None,
    actors: int | None = None,
) -> Path:
    """The refusal study (with CAST) on the default and instruct models, shipped data (``make demo``)."""
    return run_experiment(
        DEMO_CONFIG, run_dir or Path("runs") / "demo", overrides, executor=executor, address=address, actors=actors
    )
