"""Executors: where the engine's work items and tasks run.

    local   one :class:`~steerlab.experiments.engine.worker.Worker` in this process (the default; no Ray)
    ray     one worker per device on a Ray cluster (``pip install steerlab[ray]``); see
            :mod:`steerlab.experiments.engine.ray_executor` and docs/scale-out.md

Both call ``on_result(item, rows)`` on the driver for each finished batch, so the driver stays
the only writer of the run directory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from steerlab.errors import InputError
from steerlab.experiments.engine.config import ModelSpec
from steerlab.experiments.engine.worker import OnResult, Worker, WorkItem

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    """Runs batches of cells and model tasks somewhere; results come back to the driver."""

    def map(self, items: Sequence[WorkItem], on_result: OnResult) -> None:
        """Run every item; call ``on_result`` on the driver as each one finishes."""
        ...

    def call(self, spec: ModelSpec, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """``fn(model, *args)`` on a worker holding ``spec``'s model; the result comes back."""
        ...

    def close(self) -> None: ...


class LocalExecutor:
    """Everything in this process, one item after another."""

    def __init__(self) -> None:
        self.worker = Worker()

    def map(self, items: Sequence[WorkItem], on_result: OnResult) -> None:
        for item in items:
            on_result(item, self.worker.run(item))

    def call(self, spec: ModelSpec, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return self.worker.call(spec, fn, args)

    def close(self) -> None:
        self.worker = Worker()


def make_executor(name: str = "local", *, address: str | None = None, actors: int | None = None) -> Executor:
    """An executor by name: ``local`` or ``ray`` (``address``: None/"local" starts Ray here,
    ``auto`` joins the cluster this machine belongs to, ``ray://host:port`` a remote one)."""
    if name == "local":
        if address is not None or actors is not None:
            raise InputError("--address and --actors apply to --executor ray only")
        return LocalExecutor()
    if name == "ray":
        from steerlab.experiments.engine.ray_executor import RayExecutor

        return RayExecutor(address=address, actors=actors)
    raise InputError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
