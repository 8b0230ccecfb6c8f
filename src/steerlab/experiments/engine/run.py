"""The driver's side of a running experiment: :class:`Run`, the verbs a kind's flow uses.

    Run.cells(stage, cells, ...)       the engine's one verb for a kind's flow: run every cell
                                       of a stage not already on disk, batched; all their rows
    Run.task(model, fn, *args)         fn(loaded model, *args) on a worker (extraction, training)
    Run.vectors(name, model, fn, ...)  the same, for vectors, saved under vectors/ and reused
    Run.json_once(name, Record, fn)    a driver-side artifact (a JSON record), made once and reused
    Run.timer(label)                   wall time of a stage of this attempt, appended to timings.json

How cells become batches (:func:`plan_batches`): cells are grouped by model, ordered by the
kind's length estimate (so rows of similar prompt length share a batch and little padding
is computed) and cut into batches of ``batch_size``. The plan depends only on the full cell
list, never on what is already done, so after an interruption a batch that is missing rows is
rerun whole — with exactly the batch-mates it would have had — and only its missing rows
are written. Together with per-cell seeds, a resumed run writes the rows an uninterrupted
run would have written.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from steerlab.errors import ConfigError, InputError
from steerlab.experiments.engine.config import ExperimentConfig, ModelSpec
from steerlab.experiments.engine.executors import Executor
from steerlab.experiments.engine.records import Cell, Row, cell_seed, read_row
from steerlab.experiments.engine.stage import Stage
from steerlab.experiments.engine.store import RunStore
from steerlab.experiments.engine.worker import ModelInfo, WorkItem, model_info
from steerlab.progress import progress_bar
from steerlab.vectors.vector import SteeringVector, VectorSet

C = TypeVar("C", bound=Cell)
R = TypeVar("R", bound=Row)
B = TypeVar("B", bound=BaseModel)


def plan_batches(cells: Sequence[C], batch_size: int, length: Callable[[C], int]) -> list[list[C]]:
    """Cells grouped by model (in order of first appearance), sorted by length, cut into batches."""
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    by_model: dict[str, list[int]] = {}
    for i, c in enumerate(cells):
        by_model.setdefault(c.model, []).append(i)
    batches: list[list[C]] = []
    for idx in by_model.values():
        ordered = sorted(idx, key=lambda i: (length(cells[i]), i))
        batches += [[cells[i] for i in ordered[s : s + batch_size]] for s in range(0, len(ordered), batch_size)]
    return batches


class Run:
    """The driver's handle on one running experiment (handed to the kind's ``flow``)."""

    def __init__(self, kind: str, cfg: ExperimentConfig, store: RunStore, executor: Executor) -> None:
        self.kind = kind
        self.cfg = cfg
        self.store = store
        self.executor = executor
        self.root = store.root
        self._specs = {m.name: m for m in cfg.models}
        self._info: dict[str, ModelInfo] = {}
        #: the stage under way: (its label, cells saved, cells in all), for the message of a stopped run
        self.progress: tuple[str, int, int] | None = None
        self._stage_keys: set[str] = set()

    # ---- helpers for flows -------------------------------------------------------------------
    def seed(self, *parts: object) -> int:
        """A cell's own seed, from the config's seed and the cell's identity."""
        return cell_seed(self.cfg.seed, *parts)

    def spec(self, label: str) -> ModelSpec:
        if label not in self._specs:
            raise ConfigError(f"no model labelled {label!r} in the config (labels: {', '.join(self._specs)})")
        return self._specs[label]

    def model_info(self, spec: ModelSpec) -> ModelInfo:
        """Layers, hidden size and config hash of a model (read once, on a worker)."""
        if spec.name not in self._info:
            self._info[spec.name] = self.task(spec, model_info)
        return self._info[spec.name]

    def task(self, spec: ModelSpec, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(model, *args)`` on a worker that holds ``spec``'s model. ``fn`` must be a module-level
        function (it may be sent to another process) and its result picklable."""
        return self.executor.call(spec, fn, args)

    def vectors(self, name: str, spec: ModelSpec, make: Callable[..., VectorSet], *args: Any) -> VectorSet:
        """Vectors saved as ``vectors/{name}.safetensors``: read back if a previous attempt made
        them, else ``make(model, *args)`` on a worker, saved by the driver, and returned."""
        from steerlab.vectors.io import load_vectors, save_vectors

        path = self.root / "vectors" / f"{name}.safetensors"
        if path.exists():
            return load_vectors(path)
        vecs: VectorSet = self.task(spec, make, *args)
        self.store.artifact(path)
        save_vectors(path, vecs)
        return vecs

    def json_once(self, name: str, record: type[B], make: Callable[[], B]) -> B:
        """``record`` read from ``name`` in the run directory if an earlier attempt wrote it, else
        ``make()``, written there atomically (on the driver) and returned."""
        import json

        path = self.root / name
        if path.exists():
            return record.model_validate(json.loads(path.read_text(encoding="utf-8")))
        value = make()
        self.store.artifact(path)
        self.store.write_json(name, value.model_dump(mode="json"))
        return value

    @contextlib.contextmanager
    def timer(self, label: str, file: str = "timings.json") -> Iterator[None]:
        """Time the ``with`` block; append ``{stage, seconds, at}`` to ``file`` in the run directory."""
        import json

        start = time.perf_counter()
        yield
        path = self.root / file
        self.store.artifact(path)
        done = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
        done.append(
            {"stage": label, "seconds": round(time.perf_counter() - start, 2), "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        )
        self.store.write_json(file, done)

    # ---- the main verb -----------------------------------------------------------------------
    def cells(
        self,
        stage: Stage[Any, C, R],
        cells: Sequence[C],
        *,
        vectors: dict[str, SteeringVector] | VectorSet | None = None,
        batch_size: int | None = None,
        desc: str | None = None,
    ) -> list[R]:
        """Run every cell of ``stage`` not already in ``results.jsonl``; return the rows of all
        ``cells``, in order, typed as the stage's ``Row``.

        Args:
            stage: one of the kind's stages (it runs the batches and types the rows).
            cells: the stage's cells; keys must be unique in the run and models must be labels of the config.
            vectors: the vectors the cells' interventions name (shipped with each batch).
            batch_size: rows per batch (default: ``cfg.generation.batch_size`` or 8).
            desc: progress-bar label.
        """
        keys = [c.key for c in cells]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise RuntimeError(f"{self.kind}: two cells share the key {dup!r}")
        for label in {c.model for c in cells}:
            self.spec(label)
        if batch_size is None:
            gen = getattr(self.cfg, "generation", None)
            batch_size = getattr(gen, "batch_size", 8)
        table = dict(vectors.items()) if vectors is not None else {}
        wanted = set(keys)
        have: dict[str, R] = {
            r["key"]: self._typed(stage, line, r) for line, r in self.store.numbered_rows() if r["key"] in wanted
        }
        items = [
            WorkItem(
                i, self.kind, stage.name, self.cfg, self.spec(batch[0].model), tuple(batch), stage.run_batch, table
            )
            for i, batch in enumerate(plan_batches(cells, batch_size, lambda c: stage.length(self.cfg, c)))
            if any(c.key not in have for c in batch)
        ]
        label = f"{self.kind} {stage.name}"
        self.progress = (label, len(have), len(cells))
        self._stage_keys = wanted
        with progress_bar(desc or f"{label}: {len(cells)} cells") as bar:
            bar(len(have), len(cells))

            def on_result(item: WorkItem, rows: list[Any]) -> None:
                new = [r for r in rows if r.key not in have]
                self.store.append([r.model_dump(mode="json") for r in new])
                have.update((r.key, r) for r in new)
                self.progress = (label, len(have), len(cells))
                bar(len(have), len(cells))

            self.executor.map(items, on_result)
        return [have[k] for k in keys]

    def saved(self) -> tuple[str | None, int | None, int | None]:
        """(stage under way, its cells on disk, its cells in all), counted on disk now (a batch cut
        by a failed write may have left whole rows); Nones before the first stage."""
        if self.progress is None:
            return None, None, None
        label, done, total = self.progress
        try:
            done = len(self.store.done_keys() & self._stage_keys)
        except Exception:  # noqa: BLE001 - the message must not fail; fall back to the rows this run wrote
            pass
        return label, done, total

    def _typed(self, stage: Stage[Any, Any, R], line: int, raw: dict[str, Any]) -> R:
        """A row read back, validated strictly (JSON types as written: ``"yes"`` is not a bool)."""
        want = stage.Row.model_fields["version"].default
        where = f"{self.store.results_path}:{line}"
        if raw.get("version") != want:
            raise InputError(
                f"{where}: row {raw.get('key')!r} has row schema version {raw.get('version')!r}, this steerlab "
                f"writes {self.kind} {stage.name} rows of version {want}; resume with the steerlab that wrote it "
                f"or use a new --run-dir ({self.store.REPAIR})"
            )
        try:
            return read_row(stage.Row, raw)
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise InputError(
                f"{where}: row {raw.get('key')!r} is not a valid {self.kind} {stage.name} row ({loc}: {first['msg']}); "
                f"{self.store.REPAIR}"
            ) from None
