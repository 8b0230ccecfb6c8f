"""Wall and CPU time of every shipped study config on the default model: ``python -m bench.bench_study_configs``.

Each config runs as ``steerlab run CONFIG`` in a fresh run directory, in its own process; the
times are the child's wall clock and its user + system CPU seconds (``resource.getrusage``), with
the load average before and after, since on a shared machine wall time is an upper bound and CPU
time the better guide. A run that fails is recorded with its last error line, not hidden.

Writes ``bench/results/study_configs.json`` and the "## Study configs" section of docs/benchmarks.md.
``--only NAME ...`` measures some configs and keeps the others' earlier results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._docs import DOCS, write_json, write_section

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "src" / "steerlab" / "experiments" / "configs"
RESULTS = ROOT / "bench" / "results" / "study_configs.json"
# The time each study's issue asks a shipped config to stay within, in minutes on 2 CPU cores.
BUDGET_MIN = {"prefs_": 10.0, "unsupervised_ab_small": 15.0, "refusal_direction": 15.0, "demo": 15.0}
SKIP = {"unsupervised_ab"}  # the seed's full-size experiment: hours on a CPU, meant for a GPU


def budget(name: str) -> float | None:
    for prefix, minutes in BUDGET_MIN.items():
        if name.startswith(prefix):
            return minutes
    return None


def run_one(cfg: Path) -> dict:
    """Run one config in a fresh directory; wall seconds, CPU seconds, loads, outcome."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"steerlab-{cfg.stem}-")) / "run"
    code = "import sys; from steerlab.cli import main; sys.argv = ['steerlab'] + sys.argv[1:]; main()"
    env = {**os.environ, "STEERLAB_QUIET": "1"}
    load_before = os.getloadavg()[0]
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, "run", str(cfg), "--run-dir", str(run_dir)],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    ok = proc.returncode == 0 and (run_dir / "report.md").exists()
    err = "" if ok else (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {
        "config": cfg.name,
        "ok": ok,
        "error": err,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "budget_min": budget(cfg.stem),
        "run_dir": str(run_dir),
    }


def write_docs(res: dict) -> None:
    lines = [
        "## Study configs",
        "",
        f"Every shipped config in `src/steerlab/experiments/configs/` run with `steerlab run` on the "
        f"default model (Gemma 3 270M), {res['cores']} CPU cores, torch {res['torch']}, one config at a "
        "time in its own process. Wall time on a shared machine is an upper bound; CPU time (user + "
        "system) divided by the 2 cores is roughly what an otherwise idle machine would take.",
        "",
        "| config | wall | CPU time | CPU time / 2 cores | budget | load before → after | outcome |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for r in sorted(res["runs"].values(), key=lambda r: r["config"]):
        b = f"{r['budget_min']:g} min" if r.get("budget_min") else "—"
        out = "report written" if r["ok"] else f"failed: {r['error'][:80]}"
        lines.append(
            f"| `{r['config']}` | {r['wall_s'] / 60:.1f} min | {r['cpu_s'] / 60:.1f} min | "
            f"{r['cpu_s'] / 120:.1f} min | {b} | {r['load_before']:.1f} → {r['load_after']:.1f} | {out} "
            f"({r['date']}) |"
        )
    lines += [
        "",
        f"Not run here: {', '.join(sorted(f'`{s}.yaml`' for s in SKIP))} (the seed's full-size experiment).",
        "",
        "Command: `python -m bench.bench_study_configs [--only NAME ...]` (part of `make bench`).",
        "",
    ]
    write_section(DOCS, "## Study configs", "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    import torch

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, help="config names (without .yaml) to measure")
    args = ap.parse_args(argv)
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml") if p.stem not in SKIP)
    unknown = set(args.only or ()) - set(names)
    if unknown:
        ap.error(f"no such config: {', '.join(sorted(unknown))} (choose from {', '.join(names)})")
    res = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    res.update({"cores": os.cpu_count(), "torch": torch.__version__})
    for name in args.only or names:
        r = run_one(CONFIGS / f"{name}.yaml") | {"date": dt.date.today().isoformat()}
        res["runs"][name] = r
        print(json.dumps(r), flush=True)
        write_json(RESULTS, res)  # after every config: nothing lost on a crash
        write_docs(res)


if __name__ == "__main__":
    main()
