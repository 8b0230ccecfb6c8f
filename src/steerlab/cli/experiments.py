"""Experiment commands: ``run``, ``demo``, ``report``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from steerlab.errors import InputError, SteerlabError

if TYPE_CHECKING:
    pass

from steerlab.cli._app import (
    app,
    check_overrides,
    require_file,
    resumable,
    stdout,
)

# ---------------------------------------------------------------------------- experiments


def _experiments(name: str) -> Callable[..., Any]:
    """``steerlab.experiments.<name>``, or a clear error while that module is not there yet."""
    try:
        import steerlab.experiments as experiments
    except ModuleNotFoundError as e:
        if e.name not in ("steerlab.experiments",):
            raise
        experiments = None
    fn = getattr(experiments, name, None)
    if fn is None:
        raise SteerlabError(f"steerlab.experiments.{name} is not available in this installation of steerlab")
    return fn


def _report_run(result: Any) -> None:
    if result is not None:
        stdout.print(f"report: {result}")


SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config field: key.path=value (repeatable).")
]
ExecutorOpt = Annotated[str, typer.Option("--executor", help="local (default) or ray (pip install steerlab[ray]).")]
AddressOpt = Annotated[
    str | None, typer.Option("--address", help="Ray cluster: auto, or ray://host:port (default: start Ray here).")
]
ActorsOpt = Annotated[
    int | None,
    typer.Option(
        "--actors", min=1, help="Ray workers, each holding one model (default: one per GPU, else one per CPU)."
    ),
]


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Experiment config (YAML).")],
    run_dir: Annotated[Path | None, typer.Option(help="Where to write the run (resumed if it holds one).")] = None,
    set_: SetOpt = None,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    actors: ActorsOpt = None,
) -> None:
    """Run (or resume) an experiment from a YAML config."""
    require_file(config, "config file")
    overrides = check_overrides(set_ or [])
    fn = _experiments("run_experiment")
    command = ["run", str(config), *_resume_options(run_dir, overrides, executor, address, actors)]
    _report_run(
        resumable(
            command,
            lambda: fn(config, run_dir=run_dir, overrides=overrides, executor=executor, address=address, actors=actors),
        )
    )


@app.command()
def demo(
    run_dir: Annotated[Path | None, typer.Option(help="Where to write the run (default: runs/demo).")] = None,
    set_: SetOpt = None,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    actors: ActorsOpt = None,
) -> None:
    """Run the built-in demo study: the refusal comparison (with CAST) on the default and instruct models."""
    overrides = check_overrides(set_ or [])
    fn = _experiments("demo")
    command = ["demo", *_resume_options(run_dir, overrides, executor, address, actors)]
    _report_run(
        resumable(
            command, lambda: fn(run_dir=run_dir, overrides=overrides, executor=executor, address=address, actors=actors)
        )
    )


def _resume_options(
    run_dir: Path | None, overrides: list[str], executor: str, address: str | None, actors: int | None
) -> list[str]:
    """The options of a run command as words, to print the command that resumes it."""
    words = ["--run-dir", str(run_dir)] if run_dir is not None else []
    for o in overrides:
        words += ["--set", o]
    if executor != "local":
        words += ["--executor", executor]
    if address is not None:
        words += ["--address", address]
    if actors is not None:
        words += ["--actors", str(actors)]
    return words


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")]) -> None:
    """Re-render report.md and plots of a run from its summary.json and config.yaml alone."""
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    _report_run(_experiments("render_report")(run_dir))
