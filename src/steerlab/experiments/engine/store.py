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
      .artifacts        the files the engine made from the config (vectors, JSON records), one per line

Rules:
- One runner at a time: :meth:`RunStore.start` takes an exclusive lock on ``.lock`` and a
  second runner is refused with one line naming the holder.
- A directory is *bound* to its config once it holds a row: a different config is then
  refused. A run that failed (or was stopped) before its first row leaves the directory free:
  the next config that differs replaces it, and the artifacts made from the old one (listed
  in ``.artifacts``, and anything in ``vectors/``) are deleted so they are never reused.
- A row is never rewritten. Rows are read back keyed by cell key, first one wins, so a
  duplicate line can never be counted twice. A damaged last line (a crash mid-write, or one
  cut by hand) is dropped before the next append; a damaged line elsewhere is an error that
  names the file and line.
- A directory that cannot be written (read-only, full) is one line naming it, never a traceback.
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

from steerlab._io import append_jsonl, atomic_write_json, atomic_write_text, iter_jsonl_lines
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
    def has_rows(self) -> bool:
        """True once the directory holds a row (it is then bound to its config)."""
        return self.results_path.exists() and bool(self.results_path.read_bytes().strip())

    def cannot_write(self, e: OSError) -> InputError:
        """The one-line error for a run directory this process cannot write."""
        return InputError(
            f"{self.root}: cannot write the run directory ({e.strerror or e}); choose a writable --run-dir"
        )

    def lock(self) -> None:
        """Take the directory's exclusive lock, or raise InputError naming the process that holds it.

        The lock is an OS file lock (``filelock``: flock on POSIX, msvcrt on Windows) on ``.lock``,
        so it dies with its holder; the holder writes who it is to ``.lock.holder`` for the message.
        """
        from filelock import FileLock, Timeout

        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"{self.root}: exists and is not a directory")
        lock = FileLock(self.root / ".lock", timeout=0, thread_local=False)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
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
        except OSError as e:  # a read-only file system, no permission, a full disk (Timeout is an OSError too)
            raise self.cannot_write(e) from None
        self._lock = lock
        try:
            atomic_write_text(self.root / ".lock.holder", f"pid {os.getpid()} on {platform.node()}\n")
        except (OSError, InputError):
            self.unlock()
            raise

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def start(self, cfg: BaseModel) -> None:
        """Lock the directory and write config.yaml and manifest.json.

        A directory that already holds rows of a *different* config is refused; one that holds
        only artifacts of a different config (it failed before its first row) is taken over.
        """
        self.lock()
        try:
            text = dump_config(cfg)
            cfg_path = self.root / "config.yaml"
            stored = cfg_path.read_text(encoding="utf-8") if cfg_path.exists() else text
            if stored != text:
                if not self.has_rows():
                    self._discard_artifacts()  # a config that failed before its first row
                elif not _same_config(stored, cfg):
                    raise ConfigError(
                        f"{self.root} holds results of a different config; choose another --run-dir or delete it"
                    )
                # else: the same experiment, written by an older steerlab; its rows and artifacts stay
            atomic_write_text(cfg_path, text)
            self._write_manifest(cfg)
        except OSError as e:
            self.unlock()
            raise self.cannot_write(e) from None
        except BaseException:
            self.unlock()
            raise

    # ---- artifacts -------------------------------------------------------------------------
    def artifact(self, path: Path) -> None:
        """Note that ``path`` (in the run directory) is made from the config, before writing it,
        so a config replaced before its first row takes its artifacts with it."""
        rel = path.relative_to(self.root).as_posix()
        ledger = self.root / ".artifacts"
        if rel not in self._artifacts():
            with open(ledger, "a", encoding="utf-8") as f:
                f.write(rel + "\n")
                f.flush()
                os.fsync(f.fileno())

    def _artifacts(self) -> list[str]:
        ledger = self.root / ".artifacts"
        return ledger.read_text(encoding="utf-8").split() if ledger.exists() else []

    def _discard_artifacts(self) -> None:
        """Delete what an earlier config made here (it never wrote a row)."""
        root = self.root.resolve()
        listed = [self.root / rel for rel in self._artifacts()]
        vectors = sorted((self.root / "vectors").glob("*.safetensors")) if (self.root / "vectors").is_dir() else []
        for p in [*listed, *vectors, self.root / "timings.json", self.root / ".artifacts"]:
            if p.is_file() and p.resolve().is_relative_to(root):
                p.unlink()

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
        return [r for _, r in self.numbered_rows()]

    def numbered_rows(self) -> list[tuple[int, dict[str, Any]]]:
        """:meth:`rows` with the line number (1-based) of each in ``results.jsonl``."""
        if not self.results_path.exists():
            return []
        seen: dict[str, tuple[int, dict[str, Any]]] = {}
        try:
            for line, r in iter_jsonl_lines(self.results_path, skip_truncated_tail=True):
                key = r.get("key")
                if key is not None and key not in seen:
                    seen[key] = (line, r)
        except InputError as e:
            raise InputError(f"{e}; {self.REPAIR}") from None
        return list(seen.values())

    #: how to repair a damaged row (its cell is simply run again)
    REPAIR = "if that line was cut or edited by hand, delete it (or fix it) and rerun: its cell is run again"

    def done_keys(self) -> set[str]:
        return {r["key"] for r in self.rows()}

    def append(self, rows: list[dict[str, Any]]) -> None:
        self._repair_tail()
        append_jsonl(self.results_path, rows)

    def _repair_tail(self) -> None:
        """Drop a damaged last line (a crash mid-write, or a cut line an editor ended with a
        newline) before appending after it, so it never ends up in the middle of the file."""
        p = self.results_path
        if not p.exists():
            return
        data = p.read_bytes()
        end = len(data.rstrip())  # the end of the last non-blank line
        start = data.rfind(b"\n", 0, end) + 1  # its start
        try:
            whole = end > 0 and isinstance(json.loads(data[start:end]), dict)
        except ValueError:
            whole = False
        keep, tail = (end, b"\n") if whole else (start, b"")  # keep the line (newline-ended) or drop it
        if data[keep:] != tail:
            with open(p, "r+b") as f:
                f.truncate(keep)
                f.seek(keep)
                f.write(tail)

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


def _same_config(stored: str, cfg: BaseModel) -> bool:
    """Whether a stored config.yaml describes ``cfg``'s experiment: equal once read by the current
    config model, so a field a newer steerlab adds (with its default) does not orphan a run."""
    import yaml
    from pydantic import ValidationError

    try:
        return type(cfg).model_validate(yaml.safe_load(stored)) == cfg
    except (yaml.YAMLError, ValidationError, TypeError):
        return False
