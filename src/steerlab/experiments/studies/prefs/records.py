"""Cells and rows of the preference studies: one cell type, one row type per stage (complete, rate, choose, open)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from steerlab.evals.base import Verdict
from steerlab.experiments.engine.records import (
    Cell,
    Row,
)
from steerlab.prefs.parsing import Reason

if TYPE_CHECKING:
    pass

Stage = Literal["complete", "rate", "choose", "open"]
Mode = Literal["sample", "dist"]


class PrefCell(Cell):
    """One model call of a preference study (see the module docstring)."""

    stage: Stage = Field(description="complete, rate, choose or open")
    agent: str = Field(description="who acts: a model label, or a variant of one (prompted or steered)")
    mode: Mode = Field("sample", description="sample a reply, or read the answer distribution (dist)")
    item: str = Field(description="task id (choose: the task shown first)")
    origin: str = Field(description="origin of the task (choose: of the task shown first)")
    item_b: str | None = Field(None, description="choose: the task shown second")
    origin_b: str | None = Field(None, description="choose: origin of the task shown second")
    template: str | None = Field(None, description="rating or pairwise template name")
    messages: list[dict[str, str]] = Field(description="the conversation sent")
    max_new_tokens: int = Field(0, ge=0, description="most tokens of a sampled reply")
    temperature: float = Field(0.0, ge=0, description="sampling temperature (0 = greedy)")
    persona: str | None = Field(None, description="completion-time persona of the completion written or rated")
    context: str | None = Field(None, description="measurement-time system prompt name")
    completer: str | None = Field(None, description="agent whose completion is rated or compared")
    strength: float = Field(0.0, description="steering strength of this cell (a label; the intervention acts)")
    sample: int = Field(0, ge=0, description="index of the sampled reply (one seed each)")


class CompletionRow(PrefCell, Row):
    """A completed task (stage ``complete``): the reply, its refusal verdict, the system-prompt mention check."""

    version: int = Field(2, description="row schema version (2: one row type per stage)")
    text: str | None = Field(None, description="the sampled reply")
    finish_reason: Literal["stop", "length"] | None = None
    refusal: Verdict | None = Field(None, description="refusal-marker verdict of the reply")
    mentions_system: bool | None = Field(None, description="the reply mentions its system prompt")
    mention_terms: list[str] | None = Field(None, description="the system prompt's key terms found")


class RatingRow(PrefCell, Row):
    """A rating (stage ``rate``): a parsed sampled reply, or the answer distribution from one pass."""

    version: int = Field(2, description="row schema version (2: one row type per stage)")
    text: str | None = Field(None, description="sample: the sampled reply")
    finish_reason: Literal["stop", "length"] | None = None
    rating: float | None = Field(None, description="sample: the parsed rating (None = unparseable)")
    parse: Reason | None = Field(None, description="sample: why the reply could (not) be read")
    probs: list[float] | None = Field(None, description="dist: P over the template's values")
    scale_mass: float | None = Field(None, description="dist: unnormalised P of an answer on the scale")
    expected: float | None = Field(None, description="dist: expected rating")
    entropy: float | None = Field(None, description="dist: entropy of the answer distribution (nats)")


class ChoiceRow(PrefCell, Row):
    """A pairwise choice (stage ``choose``): a parsed sampled letter, or [P(A), P(B)] from one pass."""

    version: int = Field(2, description="row schema version (2: one row type per stage)")
    text: str | None = Field(None, description="sample: the sampled reply")
    finish_reason: Literal["stop", "length"] | None = None
    choice: Literal["A", "B"] | None = Field(None, description="sample: the parsed letter")
    parse: Reason | None = Field(None, description="sample: why the reply could (not) be read")
    probs: list[float] | None = Field(None, description="dist: [P(A), P(B)] normalised")
    scale_mass: float | None = Field(None, description="dist: unnormalised P of a letter")


class OpenRow(PrefCell, Row):
    """An open-ended reply (stage ``open``) and its coherence under the unsteered model."""

    version: int = Field(2, description="row schema version (2: one row type per stage)")
    text: str | None = Field(None, description="the sampled reply")
    finish_reason: Literal["stop", "length"] | None = None
    coherence: float | None = Field(None, description="coherence of the reply under the unsteered model")


#: any row of a prefs study
PrefRow = CompletionRow | RatingRow | ChoiceRow | OpenRow
