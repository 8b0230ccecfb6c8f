"""Cells and rows of the refusal study (both stages, select and eval, write RefusalRow)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from steerlab.evals.base import Verdict
from steerlab.experiments.engine.records import Cell, Record, Row


class CastGate(Record):
    """The CAST condition of a cell: steer only if the prompt's score passes the threshold."""

    vector: str = Field(description="name of the condition direction in the run's vector table")
    layer: int = Field(description="condition layer (read at the last prompt token)")
    threshold: float
    comparator: Literal["greater", "smaller"] = Field(description="steer when score > (or <) threshold")


class RefusalCell(Cell):
    """One reply to generate: a prompt under one condition."""

    version: int = Field(2, description="row schema version (2: the CAST condition, gate and gate score)")
    stage: Literal["select", "eval"] = Field(description="select (validation, layer choice) or eval (test)")
    condition: Literal["base", "prompt", "steer", "prompt+steer", "cast"]
    system: bool = Field(description="with the safety system prompt")
    strength: float = Field(description="steering strength (0 = unsteered)")
    layer: int | None = Field(description="steered layer (None when unsteered)")
    prompt_id: str
    label: str = Field(description="harmful or benign")
    category: str | None
    style: str | None
    prompt: str
    gate: CastGate | None = Field(None, description="CAST condition (None: steered unconditionally)")


class RefusalRow(RefusalCell, Row):
    """A judged reply."""

    output: str
    finish_reason: Literal["stop", "length"]
    verdict_markers: Verdict
    verdict_llm: Verdict | None
    coherence: float
    refused: bool = Field(description="the primary judge's verdict is 'refusal'")
    gate_score: float | None = Field(None, description="CAST: the prompt's condition score (None without a gate)")
    gated: bool | None = Field(None, description="CAST: whether the row was steered (None without a gate)")
