"""Judge agreement: raw rate, Cohen's kappa against hand computations, confusion table."""

from __future__ import annotations

import math

import pytest

from steerlab.errors import InputError
from steerlab.evals.agreement import cohens_kappa, judge_agreement


def test_two_class_textbook_case() -> None:
    # 50 rows: both refusal 20, a refusal / b compliance 5, a compliance / b refusal 10, both compliance 15.
    a = ["refusal"] * 25 + ["compliance"] * 25
    b = ["refusal"] * 20 + ["compliance"] * 5 + ["refusal"] * 10 + ["compliance"] * 15
    # p_o = 35/50 = 0.7; a: 25/25, b: 30/20 -> p_e = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = 0.2/0.5
    agr = judge_agreement(a, b, judge_a="markers", judge_b="llm")
    assert agr.n == 50 and agr.raw == pytest.approx(0.7)
    assert agr.kappa == pytest.approx(0.4)
    assert agr.confusion["refusal"] == {"refusal": 20, "compliance": 5, "unclear": 0}
    assert agr.confusion["compliance"] == {"refusal": 10, "compliance": 15, "unclear": 0}
    assert agr.confusion["unclear"] == {"refusal": 0, "compliance": 0, "unclear": 0}


def test_three_class_hand_computed() -> None:
    a = ["refusal", "refusal", "compliance", "compliance", "unclear", "refusal"]
    b = ["refusal", "compliance", "compliance", "compliance", "refusal", "refusal"]
    # agree on rows 0, 2, 3, 5 -> p_o = 4/6
    # a: R3 C2 U1; b: R3 C3 U0 -> p_e = (3*3 + 2*3 + 1*0) / 36 = 15/36
    p_o, p_e = 4 / 6, 15 / 36
    assert cohens_kappa(a, b) == pytest.approx((p_o - p_e) / (1 - p_e))
    assert judge_agreement(a, b).confusion["unclear"]["refusal"] == 1


def test_perfect_and_undefined_kappa() -> None:
    a = ["refusal", "compliance", "unclear"]
    assert cohens_kappa(a, a) == pytest.approx(1.0)
    same = ["refusal"] * 4
    agr = judge_agreement(same, same)
    assert agr.raw == 1.0 and math.isnan(agr.kappa)
    assert agr.to_dict()["kappa"] is None


def test_markdown_table() -> None:
    md = judge_agreement(["refusal", "compliance"], ["refusal", "refusal"], judge_a="A", judge_b="B").to_markdown()
    lines = md.splitlines()
    assert lines[0] == "| A \\ B | refusal | compliance | unclear |"
    assert lines[2] == "| refusal | 1 | 0 | 0 |"
    assert lines[3] == "| compliance | 1 | 0 | 0 |"


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match="3 verdicts with 2"):
        judge_agreement(["refusal"] * 3, ["refusal"] * 2)
    with pytest.raises(InputError, match="no verdicts"):
        cohens_kappa([], [])
    with pytest.raises(InputError, match="unknown verdict"):
        cohens_kappa(["refusal"], ["yes"])  # type: ignore[list-item]
