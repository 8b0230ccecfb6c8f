"""Interventions on a running model: add, ablate, capture — composable context managers."""

from steerlab.interventions.ablate import EVERY_RESIDUAL_WRITE, Ablate
from steerlab.interventions.add import Add
from steerlab.interventions.base import Intervention, intervene
from steerlab.interventions.capture import Capture
from steerlab.interventions.hooks import HookEntry, HookManager, StopForward, hook_manager
from steerlab.interventions.positions import Indices, LastK, PositionInfo, Span, parse_positions

__all__ = [
    "EVERY_RESIDUAL_WRITE", "Ablate", "Add", "Capture", "HookEntry", "HookManager", "Indices", "Intervention", "LastK",
    "PositionInfo", "Span", "StopForward", "hook_manager", "intervene", "parse_positions",
]
