"""The worker side of the engine: hold a loaded model, run batches of cells and tasks on it.

The same :class:`Worker` runs in the driver's process (local executor) and inside each Ray
actor (Ray executor), so a batch gives the same rows wherever it runs. A worker holds one
model at a time (the one its work asks for); auxiliary models a kind needs (an LLM judge,
a guard) and other per-worker objects are cached in its :class:`WorkerContext`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from steerlab.experiments.engine.config import ExperimentConfig, ModelSpec
from steerlab.experiments.engine.records import Cell, Row
from steerlab.vectors.vector import SteeringVector

if TYPE_CHECKING:
    from steerlab.models.hf import LanguageModel


@dataclass(frozen=True)
class WorkItem:
    """One batch of cells for one model — the unit an executor schedules.

    Attributes:
        index: position of the batch in the plan (stable across resumes).
        kind: the experiment kind's name.
        stage: the name of the kind's stage whose ``run_batch`` runs the cells.
        run_batch: that stage's ``run_batch``, a module-level function (pickled by reference).
        cfg: the run's validated config.
        model: the model the cells run on.
        cells: the batch, in order.
        vectors: the vectors the cells' interventions name (shipped with the batch, so a
            remote worker needs no access to the driver's files).
    """

    index: int
    kind: str
    stage: str
    cfg: ExperimentConfig
    model: ModelSpec
    cells: tuple[Cell, ...]
    run_batch: Callable[..., Sequence[Row]]
    vectors: dict[str, SteeringVector] = field(default_factory=dict)


#: what an executor calls on the driver for each finished work item
OnResult = Callable[[WorkItem, list[Row]], None]


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a model, read on a worker (the driver may not hold the weights)."""

    model_id: str
    n_layers: int
    hidden_size: int
    config_hash: str
    uses_chat_template: bool


def model_info(lm: LanguageModel) -> ModelInfo:
    """:class:`ModelInfo` of a loaded model (a worker task)."""
    return ModelInfo(lm.model_id, lm.n_layers, lm.hidden_size, lm.config_hash, lm.chat.uses_template)


class WorkerContext:
    """What a kind's ``run_batch`` can use besides its model: the batch's vectors and a cache
    of per-worker objects (judges, scorers, auxiliary models) that outlive one batch."""

    def __init__(self, worker: Worker, vectors: dict[str, SteeringVector]) -> None:
        self._worker = worker
        self.vectors = vectors

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()`` once per worker and key; the same object afterwards."""
        if key not in self._worker.cache:
            self._worker.cache[key] = make()
        return self._worker.cache[key]

    def aux_model(self, spec: str, batch_size: int = 8) -> LanguageModel:
        """A second model (e.g. a local LLM judge), loaded once per worker."""
        from steerlab.models.load import load_model

        lm: LanguageModel = self.cached(f"aux-model:{spec}", lambda: load_model(spec, batch_size=batch_size))
        return lm

    def judge(self, spec: str, make: Callable[[Any], Any], batch_size: int = 8) -> Any:
        """A judge built once per worker by ``make(model)``: ``model`` is the API model that ``spec``
        names (``openai:...``, ``anthropic:...``, ``serve:...``) or a local model loaded from it."""
        from steerlab.models.api import parse_api_spec

        return self.cached(
            f"judge:{getattr(make, '__qualname__', make)}:{spec}",
            lambda: make(parse_api_spec(spec) or self.aux_model(spec, batch_size=batch_size)),
        )


class Worker:
    """Runs work items and tasks; loads the model each one asks for (one at a time)."""

    def __init__(self) -> None:
        self.spec: ModelSpec | None = None
        self.lm: LanguageModel | None = None
        self.cache: dict[str, Any] = {}

    def model(self, spec: ModelSpec) -> LanguageModel:
        if self.lm is None or self.spec != spec:
            from steerlab.models.load import load_model

            self.lm = None  # free the previous model before loading the next
            self.lm = load_model(spec.id, device=spec.device, dtype=spec.dtype)
            self.spec = spec
        return self.lm

    def run(self, item: WorkItem) -> list[Row]:
        """The rows of one batch, one per cell, in order."""
        lm = self.model(item.model)
        rows = list(item.run_batch(item.cfg, lm, list(item.cells), WorkerContext(self, item.vectors)))
        if len(rows) != len(item.cells) or any(r.key != c.key for r, c in zip(rows, item.cells)):
            raise RuntimeError(f"{item.kind} stage {item.stage}: run_batch must return one row per cell, in order")
        return rows

    def call(self, spec: ModelSpec, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """``fn(model, *args)`` on ``spec``'s model."""
        return fn(self.model(spec), *args)
