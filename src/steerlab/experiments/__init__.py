"""Experiments as data: a YAML config → a run directory (see ``store.py`` for its layout)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from steerlab.experiments.config import RefusalStudyConfig, load_config, parse_config

DEMO_CONFIG = Path(__file__).parent / "configs" / "demo.yaml"

__all__ = ["DEMO_CONFIG", "RefusalStudyConfig", "demo", "load_config", "parse_config", "run_experiment"]


def _default_run_dir(name: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{name}-{stamp}"


def run_experiment(config_path: str | Path, run_dir: str | Path | None = None,
                   overrides: list[str] | None = None) -> Path:
    """Validate the config, run (or resume, if ``run_dir`` holds it) the experiment; returns the report path."""
    cfg = load_config(config_path, overrides)
    if isinstance(cfg, RefusalStudyConfig):
        from steerlab.experiments.refusal import run_refusal_study

        return run_refusal_study(cfg, run_dir or _default_run_dir(cfg.name))
    raise NotImplementedError(f"no runner for {type(cfg).__name__}")  # pragma: no cover


def demo(run_dir: str | Path | None = None, overrides: list[str] | None = None) -> Path:
    """The refusal study on the default model with the shipped data (``make demo``)."""
    return run_experiment(DEMO_CONFIG, run_dir or Path("runs") / "demo", overrides)
