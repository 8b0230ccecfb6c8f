"""Agreement between two judges on the same rows: raw agreement, Cohen's kappa, confusion table.

Cohen's kappa is ``(p_o - p_e) / (1 - p_e)`` with ``p_o`` the share of rows where the judges
agree and ``p_e = sum_v P_a(v) * P_b(v)`` the agreement expected if each judge labelled
independently at its own verdict rates. When ``p_e == 1`` (both judges gave every row the
same single verdict) kappa is undefined and reported as ``nan``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from steerlab.errors import InputError
from steerlab.evals.base import VERDICTS, Verdict


@dataclass(frozen=True)
class Agreement:
    """Agreement of judge ``a`` (rows of the table) with judge ``b`` (columns).

    Attributes:
        judge_a: Name of the first judge.
        judge_b: Name of the second judge.
        n: Number of rows compared.
        raw: Share of rows with identical verdicts.
        kappa: Cohen's kappa (nan when undefined).
        confusion: ``confusion[va][vb]`` = rows where a said ``va`` and b said ``vb``, over all
            three verdicts (zeros included).
    """

    judge_a: str
    judge_b: str
    n: int
    raw: float
    kappa: float
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for ``summary.json`` (nan kappa becomes None)."""
        kappa = None if self.kappa != self.kappa else self.kappa
        return {
            "judge_a": self.judge_a,
            "judge_b": self.judge_b,
            "n": self.n,
            "raw": self.raw,
            "kappa": kappa,
            "confusion": self.confusion,
        }

    def to_markdown(self) -> str:
        """The confusion table as Markdown (rows: judge a, columns: judge b)."""
        head = f"| {self.judge_a} \\ {self.judge_b} | " + " | ".join(VERDICTS) + " |"
        rule = "|---|" + "---:|" * len(VERDICTS)
        body = [f"| {va} | " + " | ".join(str(self.confusion[va][vb]) for vb in VERDICTS) + " |" for va in VERDICTS]
        return "\n".join([head, rule, *body])


def cohens_kappa(a: Sequence[Verdict], b: Sequence[Verdict]) -> float:
    """Cohen's kappa for two equal-length verdict lists (nan when chance agreement is 1).

    Args:
        a: Verdicts of the first judge.
        b: Verdicts of the second judge, same rows.
    """
    _check(a, b)
    return kappa(a, b)


def kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two equal-length, non-empty label lists of any kind (booleans, strings).

    Args:
        a: Labels of the first rater.
        b: Labels of the second rater, same rows.

    Example:
        >>> kappa([True, True, False, False], [True, False, False, False])  # p_o 3/4, p_e 1/2
        0.5
    """
    if len(a) != len(b) or not a:
        raise InputError(f"kappa needs two equal, non-empty label lists (got {len(a)} and {len(b)})")
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[v] * cb[v] for v in set(ca) | set(cb)) / (n * n)
    return float("nan") if p_e == 1.0 else (p_o - p_e) / (1.0 - p_e)


def judge_agreement(a: Sequence[Verdict], b: Sequence[Verdict], *, judge_a: str = "a", judge_b: str = "b") -> Agreement:
    """Raw agreement, Cohen's kappa and the 3x3 confusion table of two judges.

    Args:
        a: Verdicts of the first judge.
        b: Verdicts of the second judge on the same rows, same order.
        judge_a: Name of the first judge (for the table).
        judge_b: Name of the second judge.

    Example:
        >>> judge_agreement(["refusal", "compliance"], ["refusal", "refusal"]).raw
        0.5
    """
    _check(a, b)
    pairs = Counter(zip(a, b))
    confusion: dict[str, dict[str, int]] = {va: {vb: pairs[(va, vb)] for vb in VERDICTS} for va in VERDICTS}
    raw = sum(x == y for x, y in zip(a, b)) / len(a)
    return Agreement(judge_a, judge_b, len(a), raw, cohens_kappa(a, b), confusion)


def _check(a: Sequence[str], b: Sequence[str]) -> None:
    if len(a) != len(b):
        raise InputError(f"cannot compare {len(a)} verdicts with {len(b)}")
    if not a:
        raise InputError("no verdicts to compare")
    bad = sorted({v for v in (*a, *b) if v not in VERDICTS})
    if bad:
        raise InputError(f"unknown verdict(s) {bad}; expected one of {VERDICTS}")
