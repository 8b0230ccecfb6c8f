"""The contracts every model backend meets (local Hugging Face model, OpenAI-compatible API, fakes).

Scoring code (judges, coherence, preference measurement) depends only on these protocols,
never on a concrete backend, so a test can pass a fake and an API model can stand in for a
local one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

# A conversation is a list of {"role": "system"|"user"|"assistant", "content": str}.
Message = dict[str, str]
Conversation = list[Message]


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
