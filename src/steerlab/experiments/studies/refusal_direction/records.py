"""Cells and rows of the refusal-direction study: one cell type, one row type per stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from steerlab.evals.base import Verdict
from steerlab.experiments.engine.records import Cell, Row

PromptSet = Literal["harmful", "harmless", "overrefusal"]
Condition = Literal["baseline", "ablate", "add", "orthogonalized", "induce"]


class DirectionCell(Cell):
    """One forward or generation of one prompt. Stage-specific fields are None elsewhere.

    score:       ``metric`` (baseline / bypass / induce / kl), ``candidate``, ``refusal_tokens``
    score:       split ``train`` too: the unsteered baseline of the prompt filter
    generate:    ``condition`` (``induce``: harmless prompts only, direction added ×induce_coefficient)
    capability:  ``condition``, ``reference`` (the unsteered model's reply that is scored)
    """

    stage: Literal["score", "generate", "capability"]
    prompt_id: str
    prompt_set: PromptSet
    split: Literal["train", "val", "test"]
    prompt: str
    metric: Literal["baseline", "bypass", "induce", "kl"] | None = None
    candidate: str | None = None
    refusal_tokens: list[int] | None = None
    condition: Condition | None = None
    reference: str | None = None


class ScoreRow(DirectionCell, Row):
    """A scored validation prompt (stage ``score``): refusal log-odds, and KL for ``metric="kl"``."""

    version: int = Field(2, description="row schema version (2: one row type per stage)")
    refusal_score: float | None = Field(
        description="refusal log-odds at the last prompt position (None: NaN or infinite, e.g. an overflow)"
    )
    kl: float | None = Field(
        None, description="metric kl: last-position KL(unsteered || ablated) (nats; None if not finite)"
    )
    finite: bool = Field(True, description="False: a score of this row was NaN or infinite (stored as None)")


class GenerationRow(DirectionCell, Row):
    """A judged reply to a test prompt (stage ``generate``)."""

    version: int = Field(2, description="row schema version (2: one row type per stage)")
    output: str
    finish_reason: Literal["stop", "length"]
    words: int
    verdict_markers: Verdict
    verdict_llm: Verdict | None = None
    refused: bool = Field(description="the primary judge (LLM if configured, else markers) says refusal")
    guard: Literal["safe", "unsafe", "unparsed"] | None = None
    guard_categories: list[str] = Field(default_factory=list)
    unsafe: bool | None = Field(None, description="guard says unsafe and the reply has at least min_words words")


class CapabilityRow(DirectionCell, Row):
    """Capability cost on one harmless test prompt (stage ``capability``); None when the reference is empty."""

    version: int = Field(2, description="row schema version (2: one row type per stage)")
    kl: float | None = Field(None, description="mean per-token KL(unsteered || intervened) (nats)")
    ce: float | None = Field(None, description="cross-entropy of the reference reply (nats/token)")
    n_tokens: int = Field(description="reply tokens scored")
