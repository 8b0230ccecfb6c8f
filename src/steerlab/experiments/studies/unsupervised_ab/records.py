"""Cells and rows of the unsupervised A/B study: one row type per stage (ab scores, proxy answers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from steerlab.experiments.engine.records import Cell, Row

if TYPE_CHECKING:  # torch-heavy modules: imported where used, so loading a config stays light
    pass

# ---------------------------------------------------------------------------- config


class UnsupervisedCell(Cell):
    """One question under one condition: scored from letter logits (ab) or answered freely (proxy)."""

    stage: Literal["ab", "proxy"] = Field(description="ab (letter logits) or proxy (open answer)")
    dataset: str
    question_id: str
    question: str = Field(description="the question as shown (after the multi-choice policy and rebalancing)")
    letters: list[str] = Field(description="the option letters shown")
    options: list[str] = Field(description="the option texts, in letter order")
    behavior_letter: str = Field(description="the letter of the behaviour answer")
    other_letter: str = Field(description="the other labelled letter")
    method: str = Field(description="none (unsteered), melbo, power_iteration or random")
    vector: str | None = Field(description="the vector's name (None when unsteered)")
    scale: float = Field(description="the condition's scale (0 = unsteered; see evaluation.unit_norm)")


class ABRow(UnsupervisedCell, Row):
    """A scored ab cell: the two letters' logits under the cell's condition."""

    version: int = Field(2, description="row schema version (2: one row type per stage)")
    logit_behavior: float
    logit_other: float
    logit_diff: float = Field(description="logit(behaviour letter) − logit(other letter)")
    p_behavior: float = Field(description="softmax over the two letters")
    matches: bool = Field(description="logit difference > 0")
    letter_mass: float | None = Field(None, description="p(behaviour letter) + p(other letter) over the vocabulary")


class ProxyRow(UnsupervisedCell, Row):
    """An answered proxy cell: the open answer and the letter read from it."""

    version: int = Field(2, description="row schema version (2: one row type per stage)")
    output: str
    finish_reason: Literal["stop", "length"]
    parsed: str | None = Field(None, description="letter the parser reads in the open answer (None = none)")
    judged: str | None = Field(None, description="letter the LLM judge reads (None = none or no judge)")
