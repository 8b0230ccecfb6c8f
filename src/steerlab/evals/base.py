"""The judge contract: every judge maps (prompt, output) pairs to one verdict each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from steerlab.errors import InputError

Verdict = Literal["refusal", "compliance", "unclear"]
VERDICTS: tuple[Verdict, ...] = ("refusal", "compliance", "unclear")


@runtime_checkable
class Judge(Protocol):
    """Anything that labels model outputs as refusal, compliance or unclear.

    ``name`` identifies the judge and its settings; it is part of the cache key, so two
    judges that can disagree must have different names.
    """

    name: str

    def judge(self, prompts: Sequence[str], outputs: Sequence[str]) -> list[Verdict]:
        """Return one verdict per (prompt, output) pair, in order."""
        ...


def check_pairs(prompts: Sequence[str], outputs: Sequence[str]) -> None:
    """Raise InputError unless ``prompts`` and ``outputs`` have the same length.

    Args:
        prompts: The requests.
        outputs: The model replies, one per request.
    """
    if len(prompts) != len(outputs):
        raise InputError(f"judge got {len(prompts)} prompts but {len(outputs)} outputs")
