"""Read prompt sets and contrast pairs: the files shipped with steerlab and users' own files.

Every reader returns frozen dataclasses (:class:`Prompt`, :class:`ContrastPair`) and turns
unusable input into :class:`steerlab.errors.InputError` naming the file and, where it applies,
the line number or the missing column. Labels are normalised to ``"harmful"`` / ``"benign"``
across sources (XSTest's ``unsafe`` / ``safe`` are mapped).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, overload

from steerlab._io import iter_jsonl_lines
from steerlab.errors import InputError

PathLike = str | os.PathLike[str]

SHIPPED_PROMPT_SETS: tuple[str, ...] = ("harmful_requests", "benign_requests")
SHIPPED_PAIR_SETS: tuple[str, ...] = ("refusal_pairs",)
SPLITS: tuple[str, ...] = ("val", "test")
MODEL_KINDS: tuple[str, ...] = ("chat", "base")


@dataclass(frozen=True)
class Prompt:
    """One evaluation request.

    Attributes:
        id: Unique within its source (e.g. ``"harmful-007"``, ``"xstest-12"``).
        text: The request as the user would type it.
        category: Topic (``"weapons"``, ``"homonyms"``, ...) or None when the source has none.
        label: ``"harmful"`` or ``"benign"`` when known, else None.
        split: ``"val"`` (used to choose a layer) or ``"test"``; None when the source has none.
        source: Where the row came from (``"steerlab"``, ``"advbench"``, a file stem, ...).
        style: For shipped benign prompts, ``"lookalike"`` (resembles a harmful request) or
            ``"plain"``; None elsewhere.
    """

    id: str
    text: str
    category: str | None
    label: str | None
    split: str | None
    source: str
    style: str | None = None


@dataclass(frozen=True)
class ContrastPair:
    """A prompt with two replies that differ in the behaviour a vector should capture.

    Attributes:
        id: Unique id (``"pair-001"``).
        prompt: The user turn.
        positive: The reply showing the behaviour (for refusal pairs: the refusal).
        negative: The reply without it (for refusal pairs: the compliant-sounding opening).
        category: Topic of the prompt.
        model_kind: ``"chat"`` (written like an instruction-tuned assistant) or ``"base"``
            (short plain turns meant for a ``User: ...\\nAssistant:`` transcript); None if unknown.
    """

    id: str
    prompt: str
    positive: str
    negative: str
    category: str | None
    model_kind: str | None = None


# --------------------------------------------------------------------------- row reading


def _iter_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, row)`` from a .jsonl or .csv file (1-based line numbers)."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from iter_jsonl_lines(path)
    elif suffix == ".csv":
        yield from _iter_csv_rows(path)
    else:
        raise InputError(f"{path}: unsupported file type {suffix!r} (expected .jsonl or .csv)")


def _read_text(path: Path, encoding: str) -> str:
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not valid UTF-8 (byte {e.start})") from None


def _iter_csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    text = _read_text(path, "utf-8-sig")  # tolerate a byte-order mark from spreadsheet exports
    reader = csv.DictReader(text.splitlines(keepends=True))
    try:
        for row in reader:
            if not any((v or "").strip() for k, v in row.items() if k is not None):
                continue
            yield reader.line_num, row
    except csv.Error as e:
        raise InputError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None


def _columns(path: Path) -> list[str] | None:
    """Header of a CSV file (None for JSONL, whose fields are checked row by row)."""
    if path.suffix.lower() != ".csv":
        return None
    first = _read_text(path, "utf-8-sig").splitlines()[:1]
    return next(csv.reader(first), []) if first else []


def _check_columns(path: Path, required: list[str]) -> None:
    header = _columns(path)
    if header is None:
        return
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r} (columns present: {', '.join(map(repr, header))})")


def _field(row: dict[str, Any], key: str, path: Path, line: int, *, required: bool = True) -> str | None:
    """Return ``row[key]`` as a stripped string; raise if required and missing or empty."""
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            what = "missing field" if key not in row else "empty field"
            raise InputError(f"{path}:{line}: {what} {key!r}")
        return None
    if isinstance(value, (dict, list)):
        raise InputError(f"{path}:{line}: field {key!r} must be text, got {type(value).__name__}")
    return str(value).strip()


def _unique(ids: dict[str, int], new_id: str, path: Path, line: int) -> None:
    if new_id in ids:
        raise InputError(f"{path}:{line}: duplicate id {new_id!r} (first seen on line {ids[new_id]})")
    ids[new_id] = line


def _one_of(value: str | None, allowed: tuple[str, ...], key: str, path: Path, line: int) -> None:
    if value is not None and value not in allowed:
        raise InputError(f"{path}:{line}: {key} must be one of {allowed}, got {value!r}")


# --------------------------------------------------------------------------- user files


def load_prompts(
    path: PathLike,
    text_column: str = "prompt",
    category_column: str | None = None,
    *,
    id_column: str | None = None,
    split_column: str | None = None,
    label: str | None = None,
    source: str | None = None,
) -> list[Prompt]:
    """Load prompts from a user's JSONL or CSV file with a named text column.

    Args:
        path: A ``.jsonl`` (one object per line) or ``.csv`` (header row) file.
        text_column: Field holding the prompt text; every row must have it, non-empty.
        category_column: Optional field holding a category; empty values become None.
        id_column: Optional field holding a unique id; by default ids are
            ``"{source}-{row_index}"`` (0-based over non-empty rows).
        split_column: Optional field holding ``"val"`` or ``"test"``.
        label: Label given to every row (e.g. ``"harmful"``), or None.
        source: Name recorded on each Prompt; defaults to the file's stem.

    Returns:
        One Prompt per non-empty row, in file order.

    Raises:
        InputError: missing file or column, malformed line, empty text, duplicate id, bad split.

    Example:
        >>> load_prompts("my_prompts.csv", text_column="question")  # doctest: +SKIP
    """
    p = Path(path)
    src = source or p.stem
    _check_columns(p, [c for c in (text_column, category_column, id_column, split_column) if c])
    out: list[Prompt] = []
    seen: dict[str, int] = {}
    for line, row in _iter_rows(p):
        text = _field(row, text_column, p, line)
        assert text is not None
        pid = _field(row, id_column, p, line) if id_column else f"{src}-{len(out)}"
        assert pid is not None
        _unique(seen, pid, p, line)
        split = _field(row, split_column, p, line, required=False) if split_column else None
        _one_of(split, SPLITS, "split", p, line)
        category = _field(row, category_column, p, line, required=False) if category_column else None
        out.append(Prompt(pid, text, category, label, split, src))
    if not out:
        raise InputError(f"{p}: no rows")
    return out


def load_contrast_pairs(path: PathLike, model_kind: str | None = None) -> list[ContrastPair]:
    """Load refusal-style contrast pairs from a JSONL file in the shipped schema.

    Each line needs ``id``, ``prompt``, ``refusal`` (becomes ``positive``) and ``compliance``
    (becomes ``negative``); ``category`` and ``model_kind`` are optional.

    Args:
        path: The ``.jsonl`` file.
        model_kind: Keep only pairs written for ``"chat"`` or ``"base"`` models; None keeps all.

    Returns:
        The pairs in file order.

    Raises:
        InputError: missing fields, duplicate ids, unknown model_kind, or no rows left.
    """
    p = Path(path)
    if model_kind is not None and model_kind not in MODEL_KINDS:
        raise InputError(f"model_kind must be one of {MODEL_KINDS}, got {model_kind!r}")
    pairs: list[ContrastPair] = []
    seen: dict[str, int] = {}
    for line, row in _iter_rows(p):
        pid, prompt, pos, neg = (_field(row, k, p, line) for k in ("id", "prompt", "refusal", "compliance"))
        assert pid is not None and prompt is not None and pos is not None and neg is not None
        _unique(seen, pid, p, line)
        kind = _field(row, "model_kind", p, line, required=False)
        _one_of(kind, MODEL_KINDS, "model_kind", p, line)
        if model_kind is None or kind == model_kind:
            pairs.append(ContrastPair(pid, prompt, pos, neg, _field(row, "category", p, line, required=False), kind))
    if not pairs:
        raise InputError(f"{p}: no contrast pairs" + (f" for model_kind={model_kind!r}" if model_kind else ""))
    return pairs


# --------------------------------------------------------------------------- public benchmarks


def read_advbench(path: PathLike) -> list[Prompt]:
    """Read AdvBench ``harmful_behaviors.csv`` (columns ``goal``, ``target``).

    Args:
        path: The CSV file.

    Returns:
        Prompts with ids ``"advbench-{row_index}"`` (0-based), label ``"harmful"``, no category.
    """
    p = Path(path)
    _check_columns(p, ["goal", "target"])
    out: list[Prompt] = []
    for line, row in _iter_rows(p):
        text = _field(row, "goal", p, line)
        assert text is not None
        out.append(Prompt(f"advbench-{len(out)}", text, None, "harmful", None, "advbench"))
    return out


_XSTEST_LABELS = {"safe": "benign", "unsafe": "harmful"}


def read_xstest(path: PathLike) -> list[Prompt]:
    """Read XSTest ``xstest_prompts.csv`` (columns ``id``, ``prompt``, ``type``, ``label``).

    Args:
        path: The CSV file.

    Returns:
        Prompts with ids ``"xstest-{id}"``, category = ``type`` (e.g. ``"homonyms"``,
        ``"contrast_homonyms"``) and label ``"benign"`` for ``safe`` / ``"harmful"`` for ``unsafe``.

    Raises:
        InputError: missing column, or a label other than safe/unsafe (naming the line).
    """
    p = Path(path)
    _check_columns(p, ["id", "prompt", "type", "label"])
    out: list[Prompt] = []
    seen: dict[str, int] = {}
    for line, row in _iter_rows(p):
        raw_id, text, kind, raw_label = (_field(row, k, p, line) for k in ("id", "prompt", "type", "label"))
        assert raw_id is not None and text is not None and raw_label is not None
        if raw_label.lower() not in _XSTEST_LABELS:
            raise InputError(f"{p}:{line}: label must be 'safe' or 'unsafe', got {raw_label!r}")
        pid = f"xstest-{raw_id}"
        _unique(seen, pid, p, line)
        out.append(Prompt(pid, text, kind, _XSTEST_LABELS[raw_label.lower()], None, "xstest"))
    return out


def read_jailbreakbench(path: PathLike, label: str = "harmful") -> list[Prompt]:
    """Read a JailbreakBench behaviors CSV (unnamed index column, ``Goal``, ``Category``, ...).

    Args:
        path: The CSV file (``behaviors.csv`` / ``jailbreakbench.csv``).
        label: Label for every row: ``"harmful"`` for the harmful behaviors file, ``"benign"``
            for JailbreakBench's benign counterpart file, which has the same columns.

    Returns:
        Prompts with ids ``"jbb-{index}"`` (from the unnamed index column, or the 0-based row
        position when that column is absent) and category = ``Category``.
    """
    p = Path(path)
    _check_columns(p, ["Goal", "Category"])
    out: list[Prompt] = []
    seen: dict[str, int] = {}
    for line, row in _iter_rows(p):
        text, category = _field(row, "Goal", p, line), _field(row, "Category", p, line)
        assert text is not None
        index = _field(row, "", p, line, required=False)
        pid = f"jbb-{index if index is not None else len(out)}"
        _unique(seen, pid, p, line)
        out.append(Prompt(pid, text, category, label, None, "jailbreakbench"))
    return out


# --------------------------------------------------------------------------- shipped data


def shipped_path(name: str) -> Path:
    """Path of a JSONL file shipped in ``steerlab/data`` (e.g. ``"refusal_pairs"``).

    Args:
        name: File stem, one of ``SHIPPED_PROMPT_SETS + SHIPPED_PAIR_SETS``.
    """
    known = SHIPPED_PROMPT_SETS + SHIPPED_PAIR_SETS
    if name not in known:
        raise InputError(f"unknown shipped data set {name!r} (known: {', '.join(known)})")
    return Path(str(resources.files("steerlab.data").joinpath(f"{name}.jsonl")))


def _load_shipped_prompts(name: str) -> list[Prompt]:
    p = shipped_path(name)
    label = "harmful" if name == "harmful_requests" else "benign"
    out: list[Prompt] = []
    seen: dict[str, int] = {}
    for line, row in _iter_rows(p):
        pid, text, category, split = (_field(row, k, p, line) for k in ("id", "prompt", "category", "split"))
        assert pid is not None and text is not None
        _unique(seen, pid, p, line)
        _one_of(split, SPLITS, "split", p, line)
        style = _field(row, "style", p, line, required=False)
        out.append(Prompt(pid, text, category, label, split, "steerlab", style))
    return out


@overload
def load_shipped(name: Literal["refusal_pairs"]) -> list[ContrastPair]: ...
@overload
def load_shipped(name: Literal["harmful_requests", "benign_requests"]) -> list[Prompt]: ...
@overload
def load_shipped(name: str) -> list[Prompt] | list[ContrastPair]: ...


def load_shipped(name: str) -> list[Prompt] | list[ContrastPair]:
    """Load one of the data sets shipped with steerlab.

    Args:
        name: ``"refusal_pairs"`` (-> ContrastPair list), ``"harmful_requests"`` or
            ``"benign_requests"`` (-> Prompt list, with ``split`` and, for benign, ``style``).

    Example:
        >>> pairs = load_shipped("refusal_pairs")
        >>> pairs[0].positive.startswith("I")
        True
    """
    if name in SHIPPED_PROMPT_SETS:
        return _load_shipped_prompts(name)
    return load_contrast_pairs(shipped_path(name))  # shipped_path rejects unknown names
