"""The shipped data sets: counts, schema, disjointness and the stratified val/test split."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from steerlab.data import load_shipped, shipped_path
from steerlab.errors import InputError


def _raw(name: str) -> list[dict]:
    return [json.loads(line) for line in shipped_path(name).read_text(encoding="utf-8").splitlines() if line.strip()]


def test_counts_meet_the_issue_minimums() -> None:
    assert len(load_shipped("refusal_pairs")) >= 50
    assert len(load_shipped("harmful_requests")) >= 60
    assert len(load_shipped("benign_requests")) >= 60


@pytest.mark.parametrize("name", ["refusal_pairs", "harmful_requests", "benign_requests"])
def test_loaded_rows_match_the_raw_file(name: str) -> None:
    raw = _raw(name)
    loaded = load_shipped(name)
    assert [r["id"] for r in raw] == [x.id for x in loaded]
    assert len({r["id"] for r in raw}) == len(raw)
    assert len({r["prompt"].lower() for r in raw}) == len(raw)


def test_pairs_have_both_model_kinds_and_refusal_compliance_orientation() -> None:
    pairs = load_shipped("refusal_pairs")
    raw = {r["id"]: r for r in _raw("refusal_pairs")}
    assert {p.model_kind for p in pairs} == {"chat", "base"}
    assert sum(p.model_kind == "base" for p in pairs) >= 10
    for p in pairs:
        assert p.positive == raw[p.id]["refusal"] and p.negative == raw[p.id]["compliance"]
        assert p.positive != p.negative


def test_pair_replies_are_judged_as_intended_by_the_marker_judge() -> None:
    # Independent check of the data against the judge: every refusal reads as one, no opening does.
    from steerlab.evals.refusal_markers import marker_verdict

    pairs = load_shipped("refusal_pairs")
    assert [p.id for p in pairs if marker_verdict(p.positive) != "refusal"] == []
    assert [p.id for p in pairs if marker_verdict(p.negative) != "compliance"] == []


def test_eval_sets_are_disjoint_from_pair_prompts_and_each_other() -> None:
    def norm(s: str) -> str:
        return " ".join(s.lower().split())

    pairs = {norm(p.prompt) for p in load_shipped("refusal_pairs")}
    harmful = {norm(p.text) for p in load_shipped("harmful_requests")}
    benign = {norm(p.text) for p in load_shipped("benign_requests")}
    assert not pairs & harmful
    assert not pairs & benign
    assert not harmful & benign


@pytest.mark.parametrize("name", ["harmful_requests", "benign_requests"])
def test_split_is_about_a_third_val_within_every_category(name: str) -> None:
    prompts = load_shipped(name)
    per_cat = Counter(p.category for p in prompts)
    val = Counter(p.category for p in prompts if p.split == "val")
    assert {p.split for p in prompts} == {"val", "test"}
    for cat, n in per_cat.items():
        assert val[cat] == round(n / 3), cat
    assert 0.25 <= sum(val.values()) / len(prompts) <= 0.40


def test_labels_and_styles() -> None:
    harmful = load_shipped("harmful_requests")
    benign = load_shipped("benign_requests")
    assert {p.label for p in harmful} == {"harmful"} and {p.style for p in harmful} == {None}
    assert {p.label for p in benign} == {"benign"}
    styles = Counter(p.style for p in benign)
    assert set(styles) == {"lookalike", "plain"}
    assert styles["lookalike"] >= len(benign) / 2  # most benign prompts are lookalikes
    # a style never varies within a category
    assert all(len({p.style for p in benign if p.category == c}) == 1 for c in {p.category for p in benign})


def test_unknown_shipped_name_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown shipped data set 'nope'"):
        load_shipped("nope")


def test_datasheets_exist_and_state_the_counts() -> None:
    for name in ("refusal_pairs", "harmful_requests", "benign_requests"):
        sheet = shipped_path(name).with_suffix(".md")
        text = sheet.read_text(encoding="utf-8")
        assert "Apache-2.0" in text
        assert str(len(_raw(name))) in text
