"""Refusal study timings on the default model (Gemma 3 270M), CPU: ``python -m bench.bench_refusal``.

(a) batched conditions vs one condition at a time: the demo's 8-condition grid (base, prompt,
    steer × 3, prompt + steer × 3) over 16 prompts, generated as mixed batches of 32 rows with
    per-row strengths, against the same 128 generations run condition by condition (16 rows a
    batch, one strength per batch). Same rows, same tokens; the ratio is the time saved.
(b) ``make demo`` wall time: the whole demo (``steerlab demo``) in a fresh run directory, with
    the model cache already built (the first-ever run adds the one-time dequantisation).

Writes ``bench/results/refusal.json`` and the "## Refusal study" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._docs import write_json, write_section

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "refusal.json"
DOCS = ROOT / "docs" / "benchmarks.md"
STRENGTHS = [0.05, 0.1, 0.2]
N_PROMPTS = 16
NEW_TOKENS = 24


def grid_times(repeats: int) -> dict:
    import torch

    import steerlab as sl
    from steerlab.data import load_shipped
    from steerlab.models.backend import user

    lm = sl.load_model("default")
    pairs = load_shipped("refusal_pairs")
    vec = sl.extract(
        lm,
        [sl.Example(p.prompt, p.positive) for p in pairs[:16]],
        [sl.Example(p.prompt, p.negative) for p in pairs[:16]],
        layers=[6],
        normalization="activation_norm",
    )[6]
    prompts = [p.text for p in load_shipped("harmful_requests")[: N_PROMPTS // 2]]
    prompts += [p.text for p in load_shipped("benign_requests")[: N_PROMPTS // 2]]
    system = "You are a helpful assistant. Refuse requests that could cause harm."
    grid = [(False, 0.0), (True, 0.0)] + [(False, s) for s in STRENGTHS] + [(True, s) for s in STRENGTHS]
    rows = [(user(p, system if sys_ else None), s) for sys_, s in grid for p in prompts]

    def run(batch: int) -> float:
        start = time.perf_counter()
        for i in range(0, len(rows), batch):
            chunk = rows[i : i + batch]
            lm.generate(
                [c for c, _ in chunk],
                max_new_tokens=NEW_TOKENS,
                batch_size=len(chunk),
                interventions=[sl.Add(vec, strength=[s for _, s in chunk])],
            )
        return time.perf_counter() - start

    torch.manual_seed(0)
    run(32)  # warm-up
    mixed, per_condition = [], []
    for r in range(repeats):
        order = [(mixed, 32), (per_condition, N_PROMPTS)] if r % 2 == 0 else [(per_condition, N_PROMPTS), (mixed, 32)]
        for bucket, batch in order:
            bucket.append(run(batch))
    med = statistics.median
    return {
        "rows": len(rows),
        "new_tokens": NEW_TOKENS,
        "mixed_batch": 32,
        "per_condition_batch": N_PROMPTS,
        "mixed_seconds": mixed,
        "per_condition_seconds": per_condition,
        "ratio_mixed_over_per_condition": med(mixed) / med(per_condition),
    }


def demo_time() -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix="steerlab-demo-bench-"))
    steerlab = Path(sys.executable).with_name("steerlab")
    start = time.perf_counter()
    proc = subprocess.run(
        [str(steerlab), "demo", "--run-dir", str(run_dir / "demo")],
        env={**os.environ, "STEERLAB_QUIET": "1"},
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    ok = proc.returncode == 0 and (run_dir / "demo" / "report.md").exists()
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"seconds": seconds, "ok": ok, "stderr_tail": proc.stderr[-500:] if not ok else ""}


def write_docs(res: dict) -> None:
    g = res.get("grid")
    lines = ["## Refusal study", "", f"Measured {res['date']} on {res['cores']} CPU cores, torch {res['torch']}.", ""]
    if g:
        med = statistics.median
        lines += [
            f"Batched conditions vs one condition at a time: {g['rows']} generations (8 conditions × {N_PROMPTS} prompts, "
            f"{g['new_tokens']} new tokens). Mixed batches of {g['mixed_batch']} rows with per-row strengths: "
            f"{med(g['mixed_seconds']):.1f} s; condition by condition in batches of {g['per_condition_batch']}: "
            f"{med(g['per_condition_seconds']):.1f} s; **ratio {g['ratio_mixed_over_per_condition']:.2f}** (median of "
            f"{len(g['mixed_seconds'])}).",
            "",
        ]
    if res.get("demo"):
        d = res["demo"]
        lines += [
            f"`make demo` (`steerlab demo`, model cache already built) wall time: **{d['seconds'] / 60:.1f} min** "
            f"({'finished, report written' if d['ok'] else 'FAILED'}). The target is ≤ 10 min on 2 cores; the "
            "first run on a new machine adds the one-time dequantisation of the default model (about 45-75 s).",
            "",
        ]
    lines += ["Command: `python -m bench.bench_refusal` (part of `make bench`).", ""]
    write_section(DOCS, "## Refusal study", "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--skip-grid", action="store_true")
    args = ap.parse_args(argv)
    res = {"date": dt.date.today().isoformat(), "cores": os.cpu_count(), "torch": torch.__version__}
    if RESULTS.exists():
        prev = json.loads(RESULTS.read_text())
        res.update({k: prev[k] for k in ("grid", "demo") if k in prev})
    if not args.skip_grid:
        res["grid"] = grid_times(args.repeats)
    if not args.skip_demo:
        res["demo"] = demo_time()
    write_json(RESULTS, res)
    write_docs(res)
    print(
        json.dumps(
            {k: v for k, v in res.items() if k != "grid"}
            | {"grid_ratio": res.get("grid", {}).get("ratio_mixed_over_per_condition")},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
