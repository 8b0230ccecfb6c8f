"""Cells and rows of the refusal study (both stages, select and eval, write RefusalRow)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from steerlab.evals.base import Verdict
from steerlab.experiments.engine.records import Cell, Row

if TYPE_CHECKING:
    pass


class RefusalCell(Cell):
    """One reply to generate: a prompt under one condition."""

    stage: Literal["select", "eval"] = Field(description="select (validation, layer choice) or eval (test)")
    condition: Literal["base", "prompt", "steer", "prompt+steer"]
    system: bool = Field(description="with the safety system prompt")
    strength: float = Field(description="steering strength (0 = unsteered)")
    layer: int | None = Field(description="steered layer (None when unsteered)")
    prompt_id: str
    label: str = Field(description="harmful or benign")
    category: str | None
    style: str | None
    prompt: str


class RefusalRow(RefusalCell, Row):
    """A judged reply."""

    output: str
    finish_reason: Literal["stop", "length"]
    verdict_markers: Verdict
    verdict_llm: Verdict | None
    coherence: float
    refused: bool = Field(description="the primary judge's verdict is 'refusal'")
