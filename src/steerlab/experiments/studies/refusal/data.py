"""Prompts and contrast pairs for a refusal study, from shipped sets or user files."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Literal

from pydantic import Field

from steerlab.data import (
    ContrastPair,
    Prompt,
    load_contrast_pairs,
    load_prompts,
    load_shipped,
    read_advbench,
    read_jailbreakbench,
    read_xstest,
)
from steerlab.experiments.engine.config import Strict


class DataConfig(Strict):
    """Where prompts come from: 'shipped:NAME', 'advbench:PATH', 'xstest:PATH', 'jailbreakbench:PATH',
    or a path to a JSONL/CSV file with a text column."""

    pairs: str = Field("shipped:refusal_pairs", description="contrast pairs (prompt, refusal, compliance)")
    pair_kind: Literal["all", "chat", "base"] = Field("all", description="use pairs written for this kind of model")
    n_pairs: int | None = Field(None, ge=2, description="use only the first N pairs")
    harmful: str = Field("shipped:harmful_requests", description="harmful evaluation requests")
    benign: str = Field("shipped:benign_requests", description="benign evaluation requests")
    text_column: str = Field("prompt", description="text column for user files")
    n_val: int | None = Field(None, ge=1, description="at most N validation prompts per set (None = all)")
    n_test: int | None = Field(None, ge=1, description="at most N test prompts per set (None = all)")


@dataclass(frozen=True)
class StudyData:
    pairs: list[ContrastPair]
    val: list[Prompt]  # harmful and benign, label set
    test: list[Prompt]


_READERS = {"advbench": read_advbench, "xstest": read_xstest, "jailbreakbench": read_jailbreakbench}


def _prompts(source: str, label: str, text_column: str, seed: int) -> list[Prompt]:
    """Rows from ``shipped:NAME``, ``advbench:PATH``, ``xstest:PATH``, ``jailbreakbench:PATH`` or a
    JSONL/CSV path; a labelled source (XSTest) keeps only rows of ``label``."""
    prefix, _, rest = source.partition(":")
    if prefix == "shipped":
        rows = load_shipped(rest)
    elif prefix in _READERS and rest:
        rows = [r for r in _READERS[prefix](rest) if r.label in (label, None)]
    else:
        rows = load_prompts(source, text_column=text_column, label=label)
    rows = [r if r.label else replace(r, label=label) for r in rows]
    if any(r.split is None for r in rows):  # user files without a split: a seeded third goes to val
        rng = random.Random(seed)
        order = list(range(len(rows)))
        rng.shuffle(order)
        n_val = len(rows) // 3
        val_ids = set(order[:n_val])
        rows = [r if r.split else replace(r, split="val" if i in val_ids else "test") for i, r in enumerate(rows)]
    return rows


def load_study_data(cfg: DataConfig, seed: int) -> StudyData:
    """Pairs and val/test prompts as the config asks (first-N subsets keep category balance)."""
    if cfg.pairs.startswith("shipped:"):
        pairs = load_shipped(cfg.pairs.split(":", 1)[1])
    else:
        pairs = load_contrast_pairs(cfg.pairs)
    if cfg.pair_kind != "all":
        pairs = [p for p in pairs if p.model_kind in (cfg.pair_kind, None)]
    if cfg.n_pairs:
        pairs = pairs[: cfg.n_pairs]
    val, test = [], []
    for source, label in ((cfg.harmful, "harmful"), (cfg.benign, "benign")):
        rows = _prompts(source, label, cfg.text_column, seed)
        v = _round_robin([r for r in rows if r.split == "val"], cfg.n_val)
        t = _round_robin([r for r in rows if r.split == "test"], cfg.n_test)
        val += v
        test += t
    return StudyData(pairs, val, test)


def _round_robin(rows: list[Prompt], n: int | None) -> list[Prompt]:
    """The first ``n`` rows taking one per category in turn, so a subset spans the categories."""
    if n is None or n >= len(rows):
        return rows
    by_cat: dict[str, list[Prompt]] = {}
    for r in rows:
        by_cat.setdefault(r.category or "", []).append(r)
    out: list[Prompt] = []
    while len(out) < n:
        for cat in list(by_cat):
            if by_cat[cat] and len(out) < n:
                out.append(by_cat[cat].pop(0))
    return out
