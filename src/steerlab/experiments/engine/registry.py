"""Experiment kinds: what a study is, registered once by name.

A kind is a small class with four parts; the engine (:mod:`steerlab.experiments.engine.run`) does
everything else — the run directory, resume, batching, progress, the executor:

    Config      its pydantic config model (``kind: Literal["my_kind"]``)
    stages      its :class:`Stage` s: a name, the Row type the stage writes, ``run_batch`` (on a
                worker: one batch of cells on one loaded model → one Row per cell) and a
                prompt-length estimate for batching
    flow()      the study top to bottom, on the driver: plan cells, hand them to
                ``run.cells(stage, cells)``, decide the next stage from the rows, return the Summary
    report()    report.md and plots from the Summary alone (``steerlab report RUN_DIR``)

Adding a kind = writing its module, decorating the class with :func:`register_kind`, and
adding one line to :data:`KIND_MODULES` (name → module) so configs can name it without
importing every study at start-up. Code outside steerlab can call :func:`register_kind` on
its own class before running a config that names it.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from steerlab.errors import ConfigError
from steerlab.experiments.engine.config import ExperimentConfig
from steerlab.experiments.engine.records import Summary
from steerlab.experiments.engine.stage import Stage

if TYPE_CHECKING:
    from steerlab.experiments.engine.run import Run

#: Built-in kinds: name → module that defines (and registers) it.
KIND_MODULES: dict[str, str] = {
    "refusal_study": "steerlab.experiments.studies.refusal.flow",
    "prefs_stated": "steerlab.experiments.studies.prefs.stated",
    "prefs_sysprompt": "steerlab.experiments.studies.prefs.sysprompt",
    "prefs_self_cross": "steerlab.experiments.studies.prefs.self_cross",
    "prefs_refusal": "steerlab.experiments.studies.prefs.refusal",
    "prefs_steering": "steerlab.experiments.studies.prefs.steering",
    "prefs_revealed": "steerlab.experiments.studies.prefs.revealed",
    "refusal_direction": "steerlab.experiments.studies.refusal_direction.flow",
    "unsupervised_ab": "steerlab.experiments.studies.unsupervised_ab.flow",
}

ConfigT = TypeVar("ConfigT", bound=ExperimentConfig)
SummaryT = TypeVar("SummaryT", bound=Summary)


class ExperimentKind(ABC, Generic[ConfigT, SummaryT]):
    """Base class of an experiment kind (see the module docstring)."""

    name: ClassVar[str]
    Config: ClassVar[type[ExperimentConfig]]
    Summary: ClassVar[type[Summary]]
    stages: ClassVar[tuple[Stage[Any, Any, Any], ...]]

    @abstractmethod
    def flow(self, cfg: ConfigT, run: Run) -> SummaryT:
        """The whole study on the driver, top to bottom; returns its summary."""

    @abstractmethod
    def report(self, cfg: ConfigT, summary: SummaryT, out_dir: Path) -> Path:
        """Write ``report.md`` (and plots) into ``out_dir`` from the summary alone; return the report path."""

    @classmethod
    def stage(cls, name: str) -> Stage[Any, Any, Any]:
        """The stage called ``name``."""
        for s in cls.stages:
            if s.name == name:
                return s
        raise KeyError(f"{cls.name} has no stage {name!r} (stages: {', '.join(s.name for s in cls.stages)})")


_REGISTRY: dict[str, type[ExperimentKind[Any, Any]]] = {}

KindT = TypeVar("KindT", bound=type)


def register_kind(cls: KindT) -> KindT:
    """Class decorator: make ``cls`` the kind called ``cls.name``."""
    for attr in ("name", "Config", "Summary", "stages"):
        if not hasattr(cls, attr):
            raise TypeError(f"experiment kind {cls.__name__} needs a class attribute {attr!r}")
    names = [s.name for s in cls.stages]  # type: ignore[attr-defined]
    if len(set(names)) != len(names):
        raise TypeError(f"experiment kind {cls.__name__}: two stages share a name ({names})")
    _REGISTRY[cls.name] = cls  # type: ignore[attr-defined]
    return cls


def known_kinds() -> list[str]:
    """Names of every kind a config may use."""
    return sorted({*KIND_MODULES, *_REGISTRY})


def get_kind(name: str) -> type[ExperimentKind[Any, Any]]:
    """The kind class called ``name`` (importing its module on first use)."""
    if name not in _REGISTRY and name in KIND_MODULES:
        importlib.import_module(KIND_MODULES[name])
    if name not in _REGISTRY:
        raise ConfigError(f"kind: unknown experiment kind {name!r}; known: {', '.join(known_kinds())}")
    return _REGISTRY[name]
