"""Verdict caching: wrap any judge so each (judge, prompt, output) is judged once, ever.

Cache rows are JSONL lines ``{"key": <sha256 hex>, "judge": <name>, "verdict": <verdict>}``
appended after every call, so an interrupted run keeps what it already paid for.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from steerlab._io import append_jsonl, read_jsonl
from steerlab.errors import InputError
from steerlab.evals.base import VERDICTS, Judge, Verdict, check_pairs


def cache_key(judge_name: str, prompt: str, output: str) -> str:
    """sha256 hex digest of the JSON list ``[judge_name, prompt, output]``.

    JSON encoding keeps the three parts unambiguous (no separator can collide).

    Args:
        judge_name: The judge's ``name``.
        prompt: The request.
        output: The reply being judged.
    """
    blob = json.dumps([judge_name, prompt, output], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CachedJudge:
    """A judge that answers from a JSONL cache and asks the wrapped judge only about misses.

    Args:
        inner: The judge to wrap; its ``name`` is reused.
        path: JSONL cache file; created on first write, may be shared by several judges.

    Example:
        >>> judge = CachedJudge(RefusalMarkerJudge(), "run/verdicts.jsonl")  # doctest: +SKIP
    """

    def __init__(self, inner: Judge, path: str | os.PathLike[str]) -> None:
        self.inner = inner
        self.name = inner.name
        self.path = Path(path)
        self._memo: dict[str, Verdict] = {}
        if self.path.exists():
            for i, row in enumerate(read_jsonl(self.path, skip_truncated_tail=True)):
                verdict = row.get("verdict")
                if verdict not in VERDICTS or not isinstance(row.get("key"), str):
                    raise InputError(f"{self.path}: cache row {i + 1} is not a verdict row: {row}")
                self._memo[row["key"]] = verdict

    def judge(self, prompts: Sequence[str], outputs: Sequence[str]) -> list[Verdict]:
        """Verdicts for each pair, calling the inner judge once on the distinct uncached pairs.

        Args:
            prompts: The requests.
            outputs: The replies, one per request.
        """
        check_pairs(prompts, outputs)
        keys = [cache_key(self.name, p, o) for p, o in zip(prompts, outputs)]
        todo: dict[str, tuple[str, str]] = {}
        for k, p, o in zip(keys, prompts, outputs):
            if k not in self._memo and k not in todo:
                todo[k] = (p, o)
        if todo:
            todo_keys = list(todo)
            fresh = self.inner.judge([todo[k][0] for k in todo_keys], [todo[k][1] for k in todo_keys])
            if len(fresh) != len(todo_keys):
                raise ValueError(f"judge {self.name!r} returned {len(fresh)} verdicts for {len(todo_keys)} inputs")
            append_jsonl(self.path, ({"key": k, "judge": self.name, "verdict": v} for k, v in zip(todo_keys, fresh)))
            self._memo.update(zip(todo_keys, fresh))
        return [self._memo[k] for k in keys]
