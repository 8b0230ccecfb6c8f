"""A stage of an experiment kind: the cells it runs on a worker and the row type it writes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from steerlab.experiments.engine.config import ExperimentConfig
from steerlab.experiments.engine.records import Cell, Row

if TYPE_CHECKING:
    from steerlab.experiments.engine.worker import WorkerContext
    from steerlab.models.hf import LanguageModel

ConfigT = TypeVar("ConfigT", bound=ExperimentConfig)
CellT = TypeVar("CellT", bound=Cell)
RowT = TypeVar("RowT", bound=Row)


def _no_length(cfg: Any, cell: Any) -> int:
    return 0


@dataclass(frozen=True)
class Stage(Generic[ConfigT, CellT, RowT]):
    """One stage of a kind: the cells it runs and the rows it writes.

    Attributes:
        name: unique within the kind; a work item names its stage, so a worker finds ``run_batch``.
        Row: the row type this stage writes (and reads back on resume).
        run_batch: ``run_batch(cfg, lm, cells, ctx)`` on a worker → one ``Row`` per cell, in order.
            A module-level function: the engine looks it up by kind and stage name on the worker.
        length: a rough prompt length of a cell, so cells of similar length share a batch.
    """

    name: str
    Row: type[RowT]
    run_batch: Callable[[ConfigT, LanguageModel, Sequence[CellT], WorkerContext], list[RowT]]
    length: Callable[[ConfigT, CellT], int] = _no_length
