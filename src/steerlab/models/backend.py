"""The contracts every model backend meets (local Hugging Face model, OpenAI-compatible API, fakes).

Scoring code (judges, coherence, preference measurement) depends only on these protocols,
never on a concrete backend, so a test can pass a fake and an API model can stand in for a
local one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

# A conversation is a list of {"role": "system"|"user"|"assistant", "content": str}.
Message = dict[str, str]
Conversation = list[Message]

#: ``"stop"`` (end of turn or a stop string), ``"length"`` (token limit), ``"content_filter"`` (an
#: API withheld or cut the reply), ``"error"`` (the backend gave up on this item: see ``error``).
FinishReason = Literal["stop", "length", "content_filter", "error"]


@dataclass(frozen=True)
class Completion:
    """One generated reply (from a local model or an API).

    Attributes:
        text: the reply, cut before any stop string and stripped of surrounding whitespace.
        finish_reason: ``"stop"`` (end-of-sequence token or stop string), ``"length"``
            (``max_new_tokens`` reached), ``"content_filter"`` (an API withheld or cut the reply)
            or ``"error"`` (an API backend gave up on this item after its retries).
        prompt_tokens: tokens in the formatted prompt.
        completion_tokens: tokens generated up to and including the one that stopped the row.
        token_ids: the generated token ids counted in ``completion_tokens`` (empty from APIs).
        error: why the item failed (``finish_reason == "error"``, ``text`` empty), else None.
            A failed item is never cached as an answer: asking again retries it.
    """

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    token_ids: tuple[int, ...] = ()
    error: str | None = None

    @property
    def failed(self) -> bool:
        """True when the backend gave up on this item (see ``error``)."""
        return self.error is not None

    @classmethod
    def failure(cls, error: str) -> Completion:
        """The record of an item the backend gave up on: empty text, ``finish_reason="error"``."""
        return cls("", "error", 0, 0, (), error)


class OptionLogprobs(dict[str, float]):
    """``{option: log-probability}`` for one conversation, with the reason when it failed.

    A plain ``dict`` everywhere a dict is expected. An API backend that gave up on the item
    returns NaN for every option and the reason in ``error`` (retried on the next call).
    """

    def __init__(self, values: dict[str, float] | None = None, *, error: str | None = None) -> None:
        super().__init__(values or {})
        self.error = error

    @property
    def failed(self) -> bool:
        """True when the backend gave up on this item (see ``error``)."""
        return self.error is not None


@runtime_checkable
class ChatBackend(Protocol):
    """Anything that answers conversations with :class:`Completion` records: the local
    :class:`~steerlab.models.hf.LanguageModel` (optionally steered) or an API client.

    ``seed`` is one int (row ``i`` gets ``seed + i``), one per conversation, or None; a sampled
    reply depends only on its own conversation and seed.

    An API backend that gives up on one item (retries exhausted, a request the server refused)
    returns :meth:`Completion.failure` in its place (``finish_reason="error"``, the reason in
    ``error``) instead of raising, so the other items survive and a caller can record the
    failure in its row; asking again retries it. Errors no retry can fix (a wrong key or URL)
    raise :class:`~steerlab.errors.BackendError`.
    """

    name: str

    def complete(
        self,
        conversations: Sequence[Conversation],
        *,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        seed: int | Sequence[int] | None = None,
        stop: Sequence[str] = (),
    ) -> list[Completion]: ...


@runtime_checkable
class OptionScorer(Protocol):
    """A backend that can say how likely each option is as the *first token* of the reply
    (rating digits, A/B letters) from one forward pass, instead of sampling K replies."""

    name: str

    def option_logprobs(self, conversations: Sequence[Conversation], options: Sequence[str]) -> list[dict[str, float]]:
        """Per conversation, ``{option: log-probability}`` of the reply starting with that option.

        Log-probabilities are over the whole vocabulary (they need not sum to one over the
        options); an option the backend cannot score (absent from an API's top log-probs) is -inf.
        API backends return :class:`OptionLogprobs` (a dict whose ``error`` is set, and every
        value NaN, when the request failed).
        """
        ...


@runtime_checkable
class TextGenerator(Protocol):
    """Anything that turns conversations into assistant replies."""

    name: str

    def generate(
        self,
        conversations: Sequence[Conversation],
        *,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[str]:
        """Return one reply per conversation (greedy when ``temperature == 0``)."""
        ...


@runtime_checkable
class LogprobScorer(Protocol):
    """Anything that scores a fixed continuation token by token."""

    name: str

    def continuation_logprobs(
        self, conversations: Sequence[Conversation], continuations: Sequence[str]
    ) -> list[list[float]]:
        """Per-token log-probabilities of each continuation given its conversation.

        Returns one list per row, one float per continuation token (empty list for an
        empty continuation).
        """
        ...


def user(text: str, system: str | None = None) -> Conversation:
    """Build a one-turn conversation, optionally with a system prompt."""
    conv: Conversation = []
    if system:
        conv.append({"role": "system", "content": system})
    conv.append({"role": "user", "content": text})
    return conv
