"""The experiment engine: everything that is the same for every study.

    config         ExperimentConfig, ModelSpec, GenerationConfig; strict YAML loading, overrides
    records        Record, Versioned, Cell, Row, Summary; cell seeds and keys
    registry       ExperimentKind, Stage, register_kind, get_kind (kind name → study module)
    run            Run (the verbs a flow uses), execute, render
    store          the run directory: lock, manifest, results.jsonl, atomic writes
    worker         Worker, WorkerContext (a loaded model and its per-worker cache), ModelInfo
    executors      the local executor; ray_executor the Ray one

A study lives in ``steerlab/experiments/studies/<name>/`` and uses only these modules
(see docs/engine.md).
"""

from steerlab.experiments.engine.config import ExperimentConfig, GenerationConfig, ModelSpec
from steerlab.experiments.engine.records import Cell, Record, Row, Summary, Versioned, cell_seed, make_key
from steerlab.experiments.engine.registry import ExperimentKind, get_kind, known_kinds, register_kind
from steerlab.experiments.engine.stage import Stage

__all__ = [
    "Cell",
    "ExperimentConfig",
    "ExperimentKind",
    "GenerationConfig",
    "ModelSpec",
    "Record",
    "Row",
    "Stage",
    "Summary",
    "Versioned",
    "cell_seed",
    "get_kind",
    "known_kinds",
    "make_key",
    "register_kind",
]
