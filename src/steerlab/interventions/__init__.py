"""Interventions on a running model: add, ablate, capture, conditional (CAST) — composable context managers.

Names are imported on first use (PEP 562), so importing :mod:`steerlab.interventions.spec`
(a pydantic record the experiment engine needs) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from steerlab.interventions.ablate import EVERY_RESIDUAL_WRITE, Ablate
    from steerlab.interventions.add import Add
    from steerlab.interventions.base import Intervention, intervene
    from steerlab.interventions.capture import Capture
    from steerlab.interventions.conditional import Conditional, projected_cosine
    from steerlab.interventions.hooks import HookEntry, HookManager, StopForward, hook_manager
    from steerlab.interventions.positions import Indices, LastK, PositionInfo, Span, parse_positions
    from steerlab.interventions.spec import NO_INTERVENTION, InterventionSpec, batch_interventions

_WHERE = {
    "EVERY_RESIDUAL_WRITE": "ablate",
    "Ablate": "ablate",
    "Add": "add",
    "Intervention": "base",
    "intervene": "base",
    "Capture": "capture",
    "Conditional": "conditional",
    "projected_cosine": "conditional",
    "HookEntry": "hooks",
    "HookManager": "hooks",
    "StopForward": "hooks",
    "hook_manager": "hooks",
    "Indices": "positions",
    "LastK": "positions",
    "PositionInfo": "positions",
    "Span": "positions",
    "parse_positions": "positions",
    "NO_INTERVENTION": "spec",
    "InterventionSpec": "spec",
    "batch_interventions": "spec",
}

__all__ = [
    "EVERY_RESIDUAL_WRITE",
    "NO_INTERVENTION",
    "Ablate",
    "Add",
    "Capture",
    "Conditional",
    "HookEntry",
    "HookManager",
    "Indices",
    "Intervention",
    "InterventionSpec",
    "LastK",
    "PositionInfo",
    "Span",
    "StopForward",
    "batch_interventions",
    "hook_manager",
    "intervene",
    "parse_positions",
    "projected_cosine",
]
assert sorted(__all__) == sorted(_WHERE)  # one name list, checked at import


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'steerlab.interventions' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"steerlab.interventions.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
