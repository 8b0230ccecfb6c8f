"""Prompt sets for the refusal-direction study, split into disjoint fit / select / report sets.

    train   fits the candidate directions (difference of means) and finds the refusal tokens
    val     scores every candidate and chooses the direction
    test    the generations that are reported (plus an optional over-refusal set)

Sources (a list per set; rows are pooled, then de-duplicated by normalised text):

    shipped:harmful_requests / shipped:benign_requests    steerlab's own sets
    advbench:PATH          AdvBench harmful_behaviors.csv
    jailbreakbench:PATH    JailbreakBench behaviors CSV (rows get the set's label)
    xstest:PATH            XSTest prompts CSV, rows whose label matches the set (safe → harmless)
    self_instruct:PATH     Self-Instruct JSONL (instruction + the first instance's input)
    PATH                   any JSONL/CSV with a ``data.text_column`` column

Splitting: each pool is shuffled with a seed derived from the run seed and the set's name
and cut into ``n_train``, ``n_val`` and ``n_test`` rows. When ``harmful_test`` /
``harmless_test`` name separate sources, the test rows come from those instead, after removing
any prompt that also occurs (normalised) in the pool — so the three splits never share a
prompt, whatever the sources overlap (JailbreakBench contains AdvBench rows, for instance).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import Field

from steerlab.data import Prompt, load_prompts, load_shipped, read_advbench, read_jailbreakbench, read_xstest
from steerlab.errors import ConfigError, InputError
from steerlab.experiments.engine.config import Strict

LABELS = {"harmful": "harmful", "harmless": "benign"}  # set name → label used by steerlab.data


class DirectionDataConfig(Strict):
    """Where the harmful and harmless prompts come from, and how many go to each split."""

    harmful: list[str] = Field(
        ["shipped:harmful_requests"],
        min_length=1,
        description="harmful sources pooled for train/val (and test unless harmful_test is set)",
    )
    harmless: list[str] = Field(
        ["shipped:benign_requests"],
        min_length=1,
        description="harmless sources pooled for train/val (and test unless harmless_test is set)",
    )
    harmful_test: list[str] | None = Field(None, description="separate harmful sources for the reported test split")
    harmless_test: list[str] | None = Field(None, description="separate harmless sources for the reported test split")
    overrefusal: list[str] = Field(
        [],
        description="benign look-alike prompts (e.g. xstest:PATH) generated like the "
        "test split to measure over-refusal; [] = none",
    )
    text_column: str = Field("prompt", description="text column of plain JSONL/CSV sources")
    n_train: int = Field(32, ge=2, description="prompts per set to fit the candidates (Arditi et al.: 128)")
    n_val: int = Field(8, ge=1, description="prompts per set to score the candidates (Arditi et al.: 32)")
    n_test: int = Field(20, ge=1, description="prompts per set for the reported generations (Arditi et al.: 100)")
    n_overrefusal: int | None = Field(20, ge=1, description="at most this many over-refusal prompts (None = all)")
    max_chars: int | None = Field(
        None,
        ge=1,
        description="drop prompts longer than this many characters from every source before splitting "
        "(None = keep all): one long prompt pads its whole batch, in every candidate's forwards",
    )


@dataclass(frozen=True)
class DirectionData:
    """The splits, each a list of Prompts whose ``label`` is harmful / benign and ``split`` the split name."""

    train: dict[str, list[Prompt]]  # "harmful" / "harmless" → prompts
    val: dict[str, list[Prompt]]
    test: dict[str, list[Prompt]]
    overrefusal: list[Prompt]
    dropped_overlaps: dict[str, int]  # test / over-refusal rows dropped because the pool held them
    dropped_long: dict[str, int] = field(default_factory=dict)  # set → rows over ``max_chars``, per source set


def normalise(text: str) -> str:
    """The key prompts are de-duplicated by: lower case, runs of whitespace as one space."""
    return re.sub(r"\s+", " ", text.strip().lower())


def read_self_instruct(path: str | Path) -> list[Prompt]:
    """Self-Instruct tasks (``instruction`` + the first instance's ``input``, when non-empty) as prompts.

    Args:
        path: ``user_oriented_instructions.jsonl`` or ``seed_tasks.jsonl``.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    out: list[Prompt] = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text = str(row["instruction"]).strip()
            instances = row.get("instances") or [{}]
            extra = str(instances[0].get("input") or "").strip()
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, IndexError) as e:
            raise InputError(f"{p}:{i}: not a Self-Instruct task ({e})") from None
        out.append(
            Prompt(
                f"self-instruct-{row.get('id', len(out))}",
                f"{text}\n\n{extra}" if extra else text,
                row.get("motivation_app") or row.get("name"),
                "benign",
                None,
                "self_instruct",
            )
        )
    if not out:
        raise InputError(f"{p}: no rows")
    return out


def read_source(source: str, set_name: str, text_column: str = "prompt") -> list[Prompt]:
    """The rows of one source for ``set_name`` (harmful / harmless), labelled accordingly."""
    label = LABELS[set_name]
    prefix, sep, rest = source.partition(":")
    if prefix == "shipped" and sep:
        rows = load_shipped(rest)
        if rows and not isinstance(rows[0], Prompt):
            raise ConfigError(f"data: {source} holds contrast pairs, not prompts")
    elif prefix == "xstest" and rest:
        rows = [r for r in read_xstest(rest) if r.label == label]
    elif prefix == "advbench" and rest:
        rows = read_advbench(rest)
    elif prefix == "jailbreakbench" and rest:
        rows = read_jailbreakbench(rest, label=label)
    elif prefix == "self_instruct" and rest:
        rows = read_self_instruct(rest)
    else:
        rows = load_prompts(source, text_column=text_column, label=label)
    return [replace(r, label=label, split=None) for r in rows]  # type: ignore[arg-type]


def _pool(
    sources: list[str], set_name: str, text_column: str, exclude: set[str] = frozenset()
) -> tuple[list[Prompt], int]:
    """Rows of every source, first occurrence of each normalised text kept; rows in ``exclude`` dropped."""
    seen: set[str] = set()
    out: list[Prompt] = []
    dropped = 0
    for s in sources:
        for r in read_source(s, set_name, text_column):
            key = normalise(r.text)
            if key in exclude:
                dropped += 1
            elif key not in seen:
                seen.add(key)
                out.append(r)
    return out, dropped


def _short(rows: list[Prompt], max_chars: int | None) -> tuple[list[Prompt], int]:
    """The rows of at most ``max_chars`` characters (all when None), and how many were longer."""
    kept = rows if max_chars is None else [r for r in rows if len(r.text) <= max_chars]
    return kept, len(rows) - len(kept)


def _shuffled(rows: list[Prompt], seed: int, name: str) -> list[Prompt]:
    rows = list(rows)
    random.Random(f"{seed}|{name}").shuffle(rows)
    return rows


def load_direction_data(cfg: DirectionDataConfig, seed: int) -> DirectionData:
    """The train / val / test splits (and over-refusal prompts) the config asks for, disjoint by text."""
    train: dict[str, list[Prompt]] = {}
    val: dict[str, list[Prompt]] = {}
    test: dict[str, list[Prompt]] = {}
    dropped: dict[str, int] = {}
    too_long: dict[str, int] = {}
    used: set[str] = set()
    for set_name, sources, test_sources in (
        ("harmful", cfg.harmful, cfg.harmful_test),
        ("harmless", cfg.harmless, cfg.harmless_test),
    ):
        pool, _ = _pool(sources, set_name, cfg.text_column)
        pool, too_long[set_name] = _short(pool, cfg.max_chars)
        pool = _shuffled(pool, seed, set_name)
        need = cfg.n_train + cfg.n_val + (0 if test_sources else cfg.n_test)
        if len(pool) < need:
            raise ConfigError(
                f"data.{set_name}: {len(pool)} distinct prompts, but n_train + n_val"
                f"{'' if test_sources else ' + n_test'} = {need}; lower the counts or add sources"
            )
        train[set_name] = _with_split(pool[: cfg.n_train], "train")
        val[set_name] = _with_split(pool[cfg.n_train : cfg.n_train + cfg.n_val], "val")
        fit_keys = {normalise(r.text) for r in train[set_name] + val[set_name]}
        if test_sources:
            held, dropped[f"{set_name}_test"] = _pool(test_sources, set_name, cfg.text_column, exclude=fit_keys)
            held, too_long[f"{set_name}_test"] = _short(held, cfg.max_chars)
            held = _shuffled(held, seed, f"{set_name}_test")
            if len(held) < cfg.n_test:
                raise ConfigError(
                    f"data.{set_name}_test: {len(held)} prompts not already in the train/val pool, "
                    f"but n_test = {cfg.n_test}"
                )
            test[set_name] = _with_split(held[: cfg.n_test], "test")
        else:
            start = cfg.n_train + cfg.n_val
            test[set_name] = _with_split(pool[start : start + cfg.n_test], "test")
        used |= fit_keys | {normalise(r.text) for r in test[set_name]}
    over: list[Prompt] = []
    if cfg.overrefusal:
        rows, dropped["overrefusal"] = _pool(cfg.overrefusal, "harmless", cfg.text_column, exclude=used)
        rows, too_long["overrefusal"] = _short(rows, cfg.max_chars)
        over = _with_split(_shuffled(rows, seed, "overrefusal")[: cfg.n_overrefusal], "test")
        if not over:
            raise ConfigError("data.overrefusal: no prompts left after removing those in the other splits")
    return DirectionData(train, val, test, over, dropped, {k: n for k, n in too_long.items() if n})


def _with_split(rows: list[Prompt], split: str) -> list[Prompt]:
    return [replace(r, split=split) for r in rows]
