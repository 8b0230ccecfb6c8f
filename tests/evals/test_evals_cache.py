"""CachedJudge: misses go to the wrapped judge once, hits come from the JSONL file."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from steerlab.errors import InputError
from steerlab.evals import CachedJudge, Judge, Verdict, cache_key


class CountingJudge:
    def __init__(self, name: str = "counting") -> None:
        self.name = name
        self.seen: list[tuple[str, str]] = []

    def judge(self, prompts: Sequence[str], outputs: Sequence[str]) -> list[Verdict]:
        self.seen.extend(zip(prompts, outputs))
        return ["refusal" if o.startswith("No") else "compliance" for o in outputs]


def test_cache_key_is_sha256_of_json_triple() -> None:
    expected = hashlib.sha256(json.dumps(["j", "p", "o"]).encode()).hexdigest()
    assert cache_key("j", "p", "o") == expected
    assert cache_key("j", "ab", "c") != cache_key("j", "a", "bc")


def test_misses_are_judged_once_and_persisted(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "verdicts.jsonl"
    inner = CountingJudge()
    judge = CachedJudge(inner, path)
    assert isinstance(judge, Judge) and judge.name == "counting"
    assert judge.judge(["p1", "p2", "p1"], ["No.", "Yes", "No."]) == ["refusal", "compliance", "refusal"]
    assert inner.seen == [("p1", "No."), ("p2", "Yes")]  # the duplicate pair is judged once
    assert judge.judge(["p2", "p3"], ["Yes", "No!"]) == ["compliance", "refusal"]
    assert inner.seen[2:] == [("p3", "No!")]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["verdict"] for r in rows] == ["refusal", "compliance", "refusal"]
    assert rows[0]["key"] == cache_key("counting", "p1", "No.")

    fresh_inner = CountingJudge()
    reloaded = CachedJudge(fresh_inner, path)
    assert reloaded.judge(["p3", "p1"], ["No!", "No."]) == ["refusal", "refusal"]
    assert fresh_inner.seen == []


def test_judge_name_is_part_of_the_key(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    CachedJudge(CountingJudge("a"), path).judge(["p"], ["No"])
    other = CountingJudge("b")
    CachedJudge(other, path).judge(["p"], ["No"])
    assert other.seen == [("p", "No")]


def test_truncated_last_line_is_ignored_but_bad_rows_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    CachedJudge(CountingJudge(), path).judge(["p"], ["No"])
    with open(path, "a") as f:
        f.write('{"key": "abc", "verd')
    inner = CountingJudge()
    assert CachedJudge(inner, path).judge(["p"], ["No"]) == ["refusal"] and inner.seen == []

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": "k", "verdict": "maybe"}\n')
    with pytest.raises(InputError, match="not a verdict row"):
        CachedJudge(CountingJudge(), bad)
