"""Experiment kinds: what a study is, registered once by name.

A kind is a small class with four parts; the engine (:mod:`steerlab.experiments.engine`) does
everything else — the run directory, resume, batching, progress, the executor:

    Config      its pydantic config model (``kind: Literal["my_kind"]``)
    flow()      the study top to bottom, on the driver: plan cells, hand them to
                ``run.cells(...)``, decide the next stage from the rows, return the Summary
                (the default flow is plan → run → summarise)
    run_batch() on a worker: run one batch of cells on one loaded model → one Row per cell
    report()    report.md and plots from the Summary alone (``steerlab report RUN_DIR``)

Adding a kind = writing its module, decorating the class with :func:`register_kind`, and
adding one line to :data:`KIND_MODULES` (name → module) so configs can name it without
importing every study at start-up. Code outside steerlab can call :func:`register_kind` on
its own class before running a config that names it.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from steerlab.errors import ConfigError
from steerlab.experiments.config import ExperimentConfig
from steerlab.experiments.records import Cell, Row, Summary

if TYPE_CHECKING:
    from steerlab.experiments.engine import Run
    from steerlab.experiments.worker import WorkerContext
    from steerlab.models.hf import LanguageModel

#: Built-in kinds: name → module that defines (and registers) it.
KIND_MODULES: dict[str, str] = {
    "refusal_study": "steerlab.experiments.refusal",
    "prefs_stated": "steerlab.experiments.prefs_stated",
    "prefs_sysprompt": "steerlab.experiments.prefs_sysprompt",
    "prefs_self_cross": "steerlab.experiments.prefs_self_cross",
    "prefs_refusal": "steerlab.experiments.prefs_refusal",
    "prefs_steering": "steerlab.experiments.prefs_steering",
    "prefs_revealed": "steerlab.experiments.prefs_revealed",
    "refusal_direction": "steerlab.experiments.refusal_direction",
    "unsupervised_ab": "steerlab.experiments.unsupervised_ab",
}

ConfigT = TypeVar("ConfigT", bound=ExperimentConfig)
CellT = TypeVar("CellT", bound=Cell)
RowT = TypeVar("RowT", bound=Row)
SummaryT = TypeVar("SummaryT", bound=Summary)


class ExperimentKind(ABC, Generic[ConfigT, CellT, RowT, SummaryT]):
    """Base class of an experiment kind (see the module docstring)."""

    name: ClassVar[str]
    Config: ClassVar[type[ExperimentConfig]]
    Row: ClassVar[type[Row]]
    Summary: ClassVar[type[Summary]]

    def plan(self, cfg: ConfigT, run: "Run") -> list[CellT]:
        """The cells of a one-stage study (used by the default :meth:`flow`)."""
        raise NotImplementedError(f"{type(self).__name__} must define plan() or flow()")

    def flow(self, cfg: ConfigT, run: "Run") -> SummaryT:
        """The whole study on the driver; returns its summary. Default: plan → run → summarise."""
        rows = run.cells(self.plan(cfg, run))
        return self.summarise(cfg, rows)

    @abstractmethod
    def run_batch(self, cfg: ConfigT, lm: "LanguageModel", cells: Sequence[CellT], ctx: "WorkerContext") -> list[RowT]:
        """Run one batch of cells (all on ``lm``) and return one row per cell, in order."""

    def summarise(self, cfg: ConfigT, rows: Sequence[RowT]) -> SummaryT:
        """The summary of a one-stage study from its rows (used by the default :meth:`flow`)."""
        raise NotImplementedError(f"{type(self).__name__} must define summarise() or flow()")

    @abstractmethod
    def report(self, cfg: ConfigT, summary: SummaryT, out_dir: Path) -> Path:
        """Write ``report.md`` (and plots) into ``out_dir`` from the summary alone; return the report path."""

    def cell_length(self, cfg: ConfigT, cell: CellT) -> int:
        """A rough prompt length, so the engine batches cells of similar length together (0 = no sorting)."""
        return 0


_REGISTRY: dict[str, type[ExperimentKind[Any, Any, Any, Any]]] = {}

KindT = TypeVar("KindT", bound=type)


def register_kind(cls: KindT) -> KindT:
    """Class decorator: make ``cls`` the kind called ``cls.name``."""
    for attr in ("name", "Config", "Row", "Summary"):
        if not hasattr(cls, attr):
            raise TypeError(f"experiment kind {cls.__name__} needs a class attribute {attr!r}")
    _REGISTRY[cls.name] = cls  # type: ignore[attr-defined]
    return cls


def known_kinds() -> list[str]:
    """Names of every kind a config may use."""
    return sorted({*KIND_MODULES, *_REGISTRY})


def get_kind(name: str) -> type[ExperimentKind[Any, Any, Any, Any]]:
    """The kind class called ``name`` (importing its module on first use)."""
    if name not in _REGISTRY and name in KIND_MODULES:
        importlib.import_module(KIND_MODULES[name])
    if name not in _REGISTRY:
        raise ConfigError(f"kind: unknown experiment kind {name!r}; known: {', '.join(known_kinds())}")
    return _REGISTRY[name]
