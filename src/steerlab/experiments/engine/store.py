"""The run directory: a versioned, resumable record of one experiment.

    run_dir/
      config.yaml       the fully resolved config (defaults written out)
      manifest.json     steerlab/torch/transformers versions, git revision, start times
      results.jsonl     one row per finished cell, appended and fsynced batch by batch
      vectors/          vectors the run made (safetensors with provenance)
      summary.json      the kind's Summary (rewritten atomically)
      report.md, *.png  rendered from summary.json and config.yaml only (steerlab report)
      .lock             OS file lock held by the one process running this directory
      .lock.holder      who holds it (pid and host), for the refusal message

Rules:
- One runner at a time: :meth:`RunStore.start` takes an exclusive lock on ``.lock`` and a
  second runner is refused with one line naming the holder.
- A directory is *bound* to its config once it holds results: a different config is then
  refused. A run that failed before writing anything (missing data file, layer out of range)
  leaves the directory free for the corrected config.
- A row is never rewritten. Rows are read back keyed by cell key, first one wins, so a
  duplicate line can never be counted twice.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from steerlab._io import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl
from steerlab.errors import ConfigError, InputError
from steerlab.experiments.engine.config import dump_config

if TYPE_CHECKING:
    from filelock import BaseFileLock


def _git_revision() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except Exception:
        return None


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.results_path = self.root / "results.jsonl"
        self._lock: BaseFileLock | None = None

    # ---- binding and locking -------------------------------------------------------------
    def has_results(self) -> bool:
        """True once the directory holds any finished work (rows or vectors)."""
        rows = self.results_path.exists() and self.results_path.stat().st_size > 0
        vectors = (self.root / "vectors").is_dir() and any((self.root / "vectors").iterdir())
        return rows or vectors

    def lock(self) -> None:
        """Take the directory's exclusive lock, or raise InputError naming the process that holds it.

        The lock is an OS file lock (``filelock``: flock on POSIX, msvcrt on Windows) on ``.lock``,
        so it dies with its holder; the holder writes who it is to ``.lock.holder`` for the message.
        """
        from filelock import FileLock, Timeout

        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"{self.root}: exists and is not a directory")
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.root / ".lock", timeout=0, thread_local=False)
        try:
            lock.acquire()
        except Timeout:
            holder_file = self.root / ".lock.holder"
            holder = (
                holder_file.read_text(encoding="utf-8").strip() if holder_file.exists() else ""
            ) or "another process"
            raise InputError(
                f"{self.root}: another steerlab run is using this directory ({holder}); "
                "wait for it to finish or choose another --run-dir"
            ) from None
        atomic_write_text(self.root / ".lock.holder", f"pid {os.getpid()} on {platform.node()}\n")
        self._lock = lock

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def start(self, cfg: BaseModel) -> None:
        """Lock the directory and write config.yaml and manifest.json.

        A directory that already holds results of a *different* config is refused.
        """
        self.lock()
        try:
            text = dump_config(cfg)
            cfg_path = self.root / "config.yaml"
            if cfg_path.exists() and cfg_path.read_text(encoding="utf-8") != text and self.has_results():
                raise ConfigError(
                    f"{self.root} holds results of a different config; choose another --run-dir or delete it"
                )
            atomic_write_text(cfg_path, text)
            self._write_manifest(cfg)
        except BaseException:
            self.unlock()
            raise

    def _write_manifest(self, cfg: BaseModel | None = None) -> None:
        import torch
        import transformers

        from steerlab import __version__

        path = self.root / "manifest.json"
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        manifest: dict[str, Any] = {
            "steerlab": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "git_revision": _git_revision(),
            "dtypes": _model_dtypes(cfg),
            "started": [],
        }
        if path.exists():
            try:
                manifest["started"] = json.loads(path.read_text(encoding="utf-8")).get("started", [])
            except (json.JSONDecodeError, AttributeError):
                pass
        manifest["started"].append(now)
        atomic_write_json(path, manifest)

    # ---- rows ------------------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        """Every row on disk, one per cell key (the first written wins), in file order."""
        if not self.results_path.exists():
            return []
        seen: dict[str, dict[str, Any]] = {}
        for r in read_jsonl(self.results_path, skip_truncated_tail=True):
            key = r.get("key")
            if key is not None and key not in seen:
                seen[key] = r
        return list(seen.values())

    def done_keys(self) -> set[str]:
        return {r["key"] for r in self.rows()}

    def append(self, rows: list[dict[str, Any]]) -> None:
        self._repair_tail()
        append_jsonl(self.results_path, rows)

    def _repair_tail(self) -> None:
        """Drop a truncated last line left by a crash mid-write, before appending after it."""
        p = self.results_path
        if not p.exists():
            return
        data = p.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(p, "r+b") as f:
                f.truncate(cut)

    # ---- other files -------------------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> Path:
        atomic_write_json(self.root / name, obj)
        return self.root / name

    def write_text(self, name: str, text: str) -> Path:
        atomic_write_text(self.root / name, text)
        return self.root / name


def _model_dtypes(cfg: BaseModel | None) -> dict[str, dict[str, str]]:
    """Per model of the config: the weights' dtype on this machine's device, and why."""
    from steerlab.models.loading import pick_device, resolve_dtype

    out: dict[str, dict[str, str]] = {}
    for spec in getattr(cfg, "models", None) or []:
        try:
            device = pick_device(spec.device)
            name, why = resolve_dtype(spec.dtype, device)
        except InputError as err:
            out[spec.name] = {"error": str(err)}
            continue
        out[spec.name] = {"device": device, "dtype": name, "why": why}
    return out
