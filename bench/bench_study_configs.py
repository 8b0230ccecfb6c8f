"""Wall and CPU time of every shipped study config, float32 vs as shipped: ``python -m bench.bench_study_configs``.

Each config runs twice as ``steerlab run CONFIG`` in fresh run directories, each in its own
process: first with every model forced to float32
(``--set models.<i>.dtype=float32``: the timing before bf16 was the CPU default), then as shipped
(``dtype`` auto or bfloat16: bf16 on a CPU with native bf16 matmul). The times are the child's wall
clock and its user + system CPU seconds (``resource.getrusage``), with the load average before and
after, since on a shared machine wall time is an upper bound and CPU time the better guide. The
dtype each run used is read from its ``manifest.json``. A run that fails is recorded with its last
error line, not hidden; run directories are kept under ``$TMPDIR`` for reading, without any saved
model directory (``orthogonalized_*``, 2 GB each).

Writes ``bench/results/study_configs.json`` and the "## Study configs" section of docs/benchmarks.md.
``--only NAME ...`` measures some configs (in that order) and keeps the others' earlier results;
``--dtypes shipped`` (or ``float32``) runs one of the two.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._docs import DOCS, write_json, write_section
from steerlab.models.loading import cpu_native_bf16

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "src" / "steerlab" / "experiments" / "configs"
RESULTS = ROOT / "bench" / "results" / "study_configs.json"
# The time each study's issue asks a shipped config to stay within, in minutes on 2 CPU cores.
BUDGET_MIN = {
    "prefs_": 10.0,
    "unsupervised_ab_small": 15.0,
    "unsupervised_ab_instruct": 15.0,
    "refusal_direction": 15.0,
    "demo": 15.0,
}
SKIP = {"unsupervised_ab"}  # the seed's full-size experiment: hours on a CPU, meant for a GPU
DTYPES = ("float32", "shipped")  # forced fp32 (before), then the config as shipped (after)


def budget(name: str) -> float | None:
    for prefix, minutes in BUDGET_MIN.items():
        if name.startswith(prefix):
            return minutes
    return None


def _dtype_overrides(cfg: Path, dtype: str) -> list[str]:
    """``--set`` arguments forcing every model of the config to ``dtype`` (none: as shipped)."""
    if dtype == "shipped":
        return []
    import yaml

    models = (yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}).get("models") or []
    return [a for i in range(len(models)) for a in ("--set", f"models.{i}.dtype={dtype}")]


def run_one(cfg: Path, dtype: str = "shipped") -> dict:
    """Run one config in a fresh directory; wall seconds, CPU seconds, loads, dtypes used, outcome."""
    tmp = Path(tempfile.mkdtemp(prefix=f"steerlab-{cfg.stem}-{dtype}-"))
    run_dir = tmp / "run"
    code = "import sys; from steerlab.cli import main; sys.argv = ['steerlab'] + sys.argv[1:]; main()"
    env = {**os.environ, "STEERLAB_QUIET": "1"}
    load_before = os.getloadavg()[0]
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, "run", str(cfg), "--run-dir", str(run_dir), *_dtype_overrides(cfg, dtype)],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    ok = proc.returncode == 0 and (run_dir / "report.md").exists()
    err = "" if ok else (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    try:
        used = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))["dtypes"]
        used_dtypes = sorted({d.get("dtype", "?") for d in used.values()})
    except (OSError, KeyError, ValueError, AttributeError):
        used_dtypes = []
    for saved_model in run_dir.glob("orthogonalized_*"):
        shutil.rmtree(saved_model, ignore_errors=True)
    return {
        "config": cfg.name,
        "requested": dtype,
        "dtypes": used_dtypes,
        "ok": ok,
        "error": err,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "budget_min": budget(cfg.stem),
        "run_dir": str(run_dir),
        "date": dt.date.today().isoformat(),
        "cpu_native_bf16": cpu_native_bf16(),  # None: torch emulates bf16 on this CPU
        "boot_id": boot_id(),
    }


def boot_id() -> str:
    """This boot of this machine (Linux), or "" where the kernel does not say: two runs that share one
    were made on the same (virtual) CPU, whatever the date."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def upgrade(entry: dict) -> dict:
    """An entry of the older single-run format, from before ``dtype: auto`` existed: it ran in float32."""
    if "float32" in entry or "shipped" in entry:
        return entry
    return {"float32": {**entry, "requested": "float32", "dtypes": ["float32"]}, "date": entry.get("date", "")}


def _days(pair: dict) -> list[str]:
    """The distinct days the pair's runs were made on (a run without its own date has the pair's)."""
    days = [r.get("date") or pair.get("date", "") for r in (pair.get("float32"), pair.get("shipped")) if r]
    return list(dict.fromkeys(d for d in days if d)) or [pair.get("date", "")]


def side_by_side(pair: dict) -> bool:
    """Both runs ok and on one machine, so a ratio means something: the same boot of it where both runs
    recorded one (a pair measured across midnight counts), else one day and one kind of CPU (its bf16
    flag recorded in both).

    The VM under this project changes between sessions (one day gave an AVX2-only EPYC, another one
    with avx512_bf16), so a day alone does not make two runs comparable.
    """
    before, after = pair.get("float32"), pair.get("shipped")
    if not (before and after and before["ok"] and after["ok"] and after["wall_s"] > 0):
        return False
    if before.get("boot_id") and after.get("boot_id"):
        return bool(before["boot_id"] == after["boot_id"])
    recorded = "cpu_native_bf16" in before and "cpu_native_bf16" in after
    return len(_days(pair)) == 1 and recorded and before["cpu_native_bf16"] == after["cpu_native_bf16"]


def _cell(r: dict | None) -> str:
    if r is None:
        return "not run"
    note = f"; {r['note']}" if r.get("note") else ""
    if "cpu_native_bf16" in r:
        note += f"; CPU bf16: {r['cpu_native_bf16'] or 'emulated'}"
    if not r["ok"]:
        return f"failed after {r['wall_s'] / 60:.1f} min: {r['error'][:60]}{note}"
    return (
        f"{r['wall_s'] / 60:.1f} min ({r['cpu_s'] / 60:.1f} CPU-min; load {r['load_before']:.1f} → "
        f"{r['load_after']:.1f}){note}"
    )


def write_docs(res: dict) -> None:
    lines = [
        "## Study configs",
        "",
        f"Every shipped config in `src/steerlab/experiments/configs/` run with `steerlab run`, "
        f"{res['cores']} CPU cores, torch {res['torch']}, one config at a time in its own process: first with "
        "every model forced to float32 (`--set models.0.dtype=float32`, the CPU default before bf16), then "
        "as shipped (`dtype: auto`: bf16 on a CPU with native bf16 matmul, float32 otherwise; the dtype "
        "used is read from each run's `manifest.json`). Model caches were built before. Wall time on a shared machine is "
        "an upper bound; CPU time (user + system) is given beside it with the load average before → after. "
        "Where the float32 run is dated earlier than the shipped one, it is the run from before `dtype: auto` "
        "existed (fp32 was then the CPU default), on a shared machine, not measured side by side. A ratio "
        "is given only for two runs made on one boot of one machine (each run records the kernel's boot id; "
        "the VM has changed between sessions), or, for runs from before that was recorded, on the same day "
        "on the same kind of CPU (its bf16 flag). "
        "Where the dtype after is float32 (a CPU without native bf16 matmul), as shipped already is the "
        "float32 run, so none was made beside it.",
        "",
        "| config | budget | float32 (before) | as shipped (after) | dtype after | wall before ÷ after | date |",
        "|---|---:|---|---|---|---:|---|",
    ]
    for name in sorted(res["runs"]):
        pair = res["runs"][name]
        before, after = pair.get("float32"), pair.get("shipped")
        minutes = budget(name)  # today's budgets, whatever a run recorded when it was made
        b = f"{minutes:g} min" if minutes else "—"
        ratio = f"**{before['wall_s'] / after['wall_s']:.2f}×**" if before and after and side_by_side(pair) else "—"
        used = ", ".join((after or {}).get("dtypes") or []) or "—"
        lines.append(
            f"| `{name}.yaml` | {b} | {_cell(before)} | {_cell(after)} | {used} | {ratio} | {' / '.join(_days(pair))} |"
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
    ap.add_argument(
        "--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES), help="which runs of each config (default: both)"
    )
    args = ap.parse_args(argv)
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml") if p.stem not in SKIP)
    unknown = set(args.only or ()) - set(names)
    if unknown:
        ap.error(f"no such config: {', '.join(sorted(unknown))} (choose from {', '.join(names)})")
    res = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    res["runs"] = {k: upgrade(v) for k, v in res["runs"].items()}
    res.update({"cores": os.cpu_count(), "torch": torch.__version__})
    for name in args.only or names:
        pair: dict = {**res["runs"].get(name, {}), "date": dt.date.today().isoformat()}
        for dtype in args.dtypes:
            pair[dtype] = run_one(CONFIGS / f"{name}.yaml", dtype)
            print(json.dumps(pair[dtype]), flush=True)
            res["runs"][name] = pair
            write_json(RESULTS, res)  # after every run: nothing lost on a crash
            write_docs(res)


if __name__ == "__main__":
    main()
