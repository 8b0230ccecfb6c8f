"""steerlab: find directions in a language model's activations, steer or ablate with them,
and measure what changes.

The public API is the names in ``__all__``; heavy modules (torch, transformers) load on first
use, so ``import steerlab`` and ``steerlab --help`` stay fast.

    >>> import steerlab as sl
    >>> lm = sl.load_model("default")
    >>> vecs = sl.extract(lm, pos, neg, layers=[6, 8])
    >>> lm.generate(["Tell me a joke."], interventions=[sl.Add(vecs[6], strength=0.5)])
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # models
    "load_model": "steerlab.models.load",
    "LanguageModel": "steerlab.models.hf",
    "register_architecture": "steerlab.models.layers",
    # interventions
    "Add": "steerlab.interventions.add",
    "Ablate": "steerlab.interventions.ablate",
    "Capture": "steerlab.interventions.capture",
    "intervene": "steerlab.interventions.base",
    "LastK": "steerlab.interventions.positions",
    "Span": "steerlab.interventions.positions",
    # vectors
    "Example": "steerlab.vectors.extract",
    "extract": "steerlab.vectors.extract",
    "SteeringVector": "steerlab.vectors.vector",
    "save_vectors": "steerlab.vectors.io",
    "load_vectors": "steerlab.vectors.io",
    "load_vector": "steerlab.vectors.io",
    "export_gguf": "steerlab.vectors.gguf_export",
    "random_like": "steerlab.vectors.random",
    # preferences (seed 004)
    "PairCounts": "steerlab.prefs",
    "fit_thurstonian": "steerlab.prefs",
    "run_active_learning": "steerlab.prefs",
    # experiments
    "run_experiment": "steerlab.experiments",
    "demo": "steerlab.experiments",
    # errors
    "SteerlabError": "steerlab.errors",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'steerlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
