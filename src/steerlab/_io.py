"""Atomic file writes and JSONL helpers shared by every module that writes results."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from steerlab.errors import InputError


def apply_umask(path: str | os.PathLike[str], mode: int = 0o666) -> None:
    """Give a file the permissions a plain ``open()`` would have (``mode`` minus the umask).

    Temporary files from :mod:`tempfile` are created 0600; a result file renamed from one
    would otherwise be unreadable to the user's group.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader never sees a half-written file.

    The bytes go to a temporary file in the same directory, are flushed and fsynced,
    then renamed over the target (``os.replace`` is atomic on POSIX and Windows). Errors name
    ``path``, never the temporary file, and leave no temporary file behind.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        apply_umask(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write UTF-8 text to ``path``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def append_jsonl(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> None:
    """Append rows to a JSONL file, each line written whole and fsynced.

    A crash can at worst leave a truncated final line, which :func:`read_jsonl` with
    ``skip_truncated_tail=True`` ignores; earlier lines are never touched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(json.dumps(r, default=str) + "\n" for r in rows)
    if not payload:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())


def iter_jsonl_lines(
    path: str | os.PathLike[str], *, skip_truncated_tail: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` per non-empty line (1-based), the one JSONL reader of steerlab.

    Lines are split on ``\n`` only (a JSON string may hold U+2028 and other characters that
    ``str.splitlines`` would split on; a ``\r\n`` ending is whitespace to JSON). A file that is not
    UTF-8, a malformed line or a line that is not an object raises InputError naming the file and
    line; ``skip_truncated_tail`` ignores a malformed *last* line (a crash mid-append).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    lines = text.split("\n")
    last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if skip_truncated_tail and i == last:
                return
            raise InputError(f"{path}:{i + 1}: malformed JSON line ({e.msg})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{i + 1}: expected a JSON object, got {type(obj).__name__}")
        yield i + 1, obj


def iter_jsonl(path: str | os.PathLike[str], *, skip_truncated_tail: bool = False) -> Iterator[dict[str, Any]]:
    """Yield one dict per non-empty line (see :func:`iter_jsonl_lines`)."""
    for _, obj in iter_jsonl_lines(path, skip_truncated_tail=skip_truncated_tail):
        yield obj


def read_jsonl(path: str | os.PathLike[str], *, skip_truncated_tail: bool = False) -> list[dict[str, Any]]:
    """Read a whole JSONL file (see :func:`iter_jsonl`)."""
    return list(iter_jsonl(path, skip_truncated_tail=skip_truncated_tail))


def slug(text: str) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``._-``; at most 80 characters)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "model"
