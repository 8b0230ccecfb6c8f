"""The run directory: a versioned, resumable record of one experiment.

    run_dir/
      config.yaml       the fully resolved config (defaults written out)
      manifest.json     steerlab/torch/transformers versions, git revision, start times
      results.jsonl     one row per finished cell, appended and fsynced batch by batch
      vectors/          extracted vectors (safetensors with provenance)
      verdicts.jsonl    judge cache
      summary.json      aggregated numbers (rewritten atomically)
      report.md         tables and the reading of them, from results files only
      *.png             plots, from results files only

A row is never rewritten; a rerun reads the finished cells' keys and skips them, so an
interrupted run resumes where it stopped and finished cells keep their exact results.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from steerlab._io import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl
from steerlab.errors import ConfigError
from steerlab.experiments.config import dump_config


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

    def start(self, cfg: BaseModel) -> None:
        """Create the directory, or check that an existing one belongs to the same config."""
        self.root.mkdir(parents=True, exist_ok=True)
        text = dump_config(cfg)
        cfg_path = self.root / "config.yaml"
        if cfg_path.exists() and cfg_path.read_text(encoding="utf-8") != text:
            raise ConfigError(
                f"{self.root} holds a run of a different config; choose another --run-dir or delete it"
            )
        atomic_write_text(cfg_path, text)
        import torch
        import transformers

        from steerlab import __version__

        manifest_path = self.root / "manifest.json"
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        manifest: dict[str, Any] = {
            "steerlab": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "git_revision": _git_revision(), "started": [],
        }
        if manifest_path.exists():
            import json

            manifest["started"] = json.loads(manifest_path.read_text()).get("started", [])
        manifest["started"].append(now)
        atomic_write_json(manifest_path, manifest)

    def rows(self) -> list[dict[str, Any]]:
        if not self.results_path.exists():
            return []
        return read_jsonl(self.results_path, skip_truncated_tail=True)

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

    def write_json(self, name: str, obj: Any) -> Path:
        atomic_write_json(self.root / name, obj)
        return self.root / name

    def write_text(self, name: str, text: str) -> Path:
        atomic_write_text(self.root / name, text)
        return self.root / name
