"""A disk cache of API replies: every sample is paid for once, a failure is kept until retried.

One SQLite file (``replies.sqlite``) in the cache directory, safe to share between threads and
processes (WAL journal; every write is its own transaction, so a crash loses at most the write in
progress). Two tables:

``replies``   key → the normalised reply of ONE sample (text, finish reason, token counts,
              first-token log-probabilities when asked for).
``failures``  key → the last error of a request that was given up on, and how many attempts it
              took. A failure is never served as an answer: the next run asks again, and the
              row is deleted when that succeeds.

The key (:func:`request_key`) is the SHA-256 of the whole request as sent (provider, endpoint
URL, model, messages, every sampling parameter, the seed, anything in ``extra_body``) plus the
sample index: sample ``j`` of a request is never served as sample ``k``.

Example:
    >>> cache = ReplyCache("~/.cache/steerlab/api")
    >>> key = request_key("openai", "http://127.0.0.1:8000/v1", {"model": "m", "messages": []}, sample=0)
    >>> cache.get(key) is None
    True
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steerlab.errors import InputError

#: Bump when the stored reply format changes (old rows then simply miss).
CACHE_FORMAT = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, request TEXT NOT NULL, reply TEXT NOT NULL,
                                    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS failures (key TEXT PRIMARY KEY, request TEXT NOT NULL, error TEXT NOT NULL,
                                     attempts INTEGER NOT NULL, updated REAL NOT NULL);
"""


def request_key(provider: str, url: str, request: Mapping[str, Any], sample: int) -> str:
    """SHA-256 hex digest naming sample ``sample`` of ``request`` sent to ``url``.

    Args:
        provider: the API family (``"openai"``, ``"anthropic"``): the same JSON means different
            things to different APIs.
        url: the endpoint's base URL (two servers may serve different models under one name).
        request: the request body as sent, without ``n`` (the sample index replaces it).
        sample: which sample of this request (0 for the first).
    """
    blob = json.dumps(
        [CACHE_FORMAT, provider, url.rstrip("/"), request, int(sample)],
        sort_keys=True,
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Failure:
    """A request given up on: kept so it is visible, retried by the next run that asks for it."""

    key: str
    request: dict[str, Any]
    error: str
    attempts: int
    updated: float


class ReplyCache:
    """The disk cache (see the module docstring).

    Args:
        directory: where ``replies.sqlite`` lives (created if missing; ``~`` is expanded).

    Counters ``hits``, ``misses`` and ``writes`` count this object's lookups and stores.
    """

    FILE = "replies.sqlite"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"{self.directory}: cannot create the API cache directory ({e.strerror or e})") from None
        self.path = self.directory / self.FILE
        self._local = threading.local()
        self._lock = threading.Lock()
        self.hits = self.misses = self.writes = 0
        with self._db() as db:
            db.executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._connect()
            self._local.db = db
        return db

    def _connect(self) -> sqlite3.Connection:
        """A new connection in WAL mode. SQLite answers "database is locked" at once, without
        waiting on its busy timeout, when connections race to switch a new file to WAL (two runs
        sharing a cache directory, or a client's first request racing a reader): such races are
        retried for up to a minute; any other database error means the file is not a cache."""
        deadline = time.monotonic() + 60.0
        for attempt in itertools.count():
            db = None
            try:
                db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
                if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                return db
            except sqlite3.DatabaseError as e:
                if db is not None:
                    db.close()
                if not isinstance(e, sqlite3.OperationalError) or "locked" not in str(e) or time.monotonic() > deadline:
                    raise InputError(f"{self.path}: not a usable API cache ({e})") from None
                time.sleep(min(0.5, 0.01 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    # ---- replies --------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        """The stored reply of ``key``, or None."""
        row = self._db().execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        with self._lock:
            if row is None:
                self.misses += 1
            else:
                self.hits += 1
        return None if row is None else json.loads(row[0])

    def put(self, key: str, request: Mapping[str, Any], reply: Mapping[str, Any]) -> None:
        """Store the reply of ``key`` and clear any failure recorded for it."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?)",
                (key, json.dumps(request, sort_keys=True), json.dumps(reply), time.time()),
            )
            db.execute("DELETE FROM failures WHERE key = ?", (key,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        with self._lock:
            self.writes += 1

    # ---- failures -------------------------------------------------------------------------
    def fail(self, key: str, request: Mapping[str, Any], error: str, attempts: int) -> None:
        """Record that ``key`` failed (replacing an earlier failure record of it)."""
        self._db().execute(
            "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?)",
            (key, json.dumps(request, sort_keys=True), error, int(attempts), time.time()),
        )

    def failures(self) -> list[Failure]:
        """Every failure not yet retried successfully, oldest first."""
        rows = (
            self._db()
            .execute("SELECT key, request, error, attempts, updated FROM failures ORDER BY updated")
            .fetchall()
        )
        return [Failure(k, json.loads(r), e, a, u) for k, r, e, a, u in rows]

    def __len__(self) -> int:
        return int(self._db().execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def keys(self) -> Iterator[str]:
        """Keys of every stored reply."""
        for (k,) in self._db().execute("SELECT key FROM replies"):
            yield k

    def close(self) -> None:
        """Close this thread's connection (other threads' close when they end)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
