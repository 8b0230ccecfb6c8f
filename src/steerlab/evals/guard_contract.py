"""What every harm guard returns and the one method it has (:class:`GuardClassifier`).

Kept apart from :mod:`steerlab.evals.guard` (the Llama-Guard, API and proxy guards and
``make_guard``) so that guards defined elsewhere, e.g. :mod:`steerlab.evals.harm_rubric`, can
implement the contract without importing the module that builds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = ["GuardClassifier", "GuardLabel", "GuardVerdict"]

GuardLabel = Literal["safe", "unsafe", "unparsed"]


@dataclass(frozen=True)
class GuardVerdict:
    """One guard judgement.

    Attributes:
        label: ``safe``, ``unsafe`` or ``unparsed``.
        categories: violated category codes (``unsafe`` only), e.g. ``("S1",)``.
        raw: the guard's text (empty for the proxy).
    """

    label: GuardLabel
    categories: tuple[str, ...] = ()
    raw: str = ""


@runtime_checkable
class GuardClassifier(Protocol):
    """Anything that judges (request, reply) pairs as safe / unsafe. ``name`` identifies it in reports."""

    name: str

    def classify(self, prompts: Sequence[str], responses: Sequence[str]) -> list[GuardVerdict]:
        """One verdict per pair, in order."""
        ...
