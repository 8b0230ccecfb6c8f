"""The experiment engine's costs on the default model (Gemma 3 270M), CPU: ``python -m bench.bench_engine``.

(a) demo: the kernel vs the runner it replaced. ``steerlab demo`` in a fresh run directory from
    this tree, and from the last commit before the engine (``OLD_REVISION``, checked out in a
    temporary git worktree and imported with PYTHONPATH), alternating. Target: new/old ≤ 0.8
    (length buckets and stopping at end of turn).
(b) batched generation, tokens per second: ``LanguageModel.complete`` vs plain Hugging Face
    ``generate`` on the same prompts and batches (greedy). "Useful" tokens are those up to the end
    of each reply (the end-of-sequence token or the plain format's next ``User:`` turn).
(c) demo on the Ray executor with 2 workers vs the local executor, with where the time goes.
(d) sampling overhead: per-row seeded sampling (``SeededSampler``) vs plain ``generate`` sampling,
    both forced to the same number of tokens, interleaved rounds. Target ≤ 1.05.

Writes ``bench/results/engine.json`` and the "## Experiment engine" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._docs import interleaved, timed, write_json, write_section

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "engine.json"
DOCS = ROOT / "docs" / "benchmarks.md"
OLD_REVISION = "ce67219"  # the last commit with the one-off refusal runner (experiments/cells.py)
N_PROMPTS, BATCH, NEW_TOKENS = 16, 16, 48


def _load() -> tuple[float, str]:
    out = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return os.getloadavg()[0], out


# ---------------------------------------------------------------------------- (a) and (c): demos


def _demo(pythonpath: str | None, extra: list[str], keep: Path | None = None) -> float:
    """Seconds for one ``steerlab demo`` in a fresh directory (kept at ``keep`` if given)."""
    run_dir = Path(tempfile.mkdtemp(prefix="steerlab-demo-bench-"))
    env = {**os.environ, "STEERLAB_QUIET": "1"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    code = "import sys; from steerlab.cli import main; sys.argv = ['steerlab'] + sys.argv[1:]; main()"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, "demo", "--run-dir", str(run_dir / "demo"), *extra],
        env=env,
        capture_output=True,
        text=True,
        cwd=run_dir,
    )
    seconds = time.perf_counter() - start
    ok = proc.returncode == 0 and (run_dir / "demo" / "report.md").exists()
    if ok and keep is not None:
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(run_dir / "demo", keep)
    shutil.rmtree(run_dir, ignore_errors=True)
    if not ok:
        raise RuntimeError(f"demo failed: {proc.stderr[-1500:]}")
    return seconds


def summary_without_rate_intervals(path: Path) -> object:
    """A summary.json with the rates' interval ends and record versions dropped (the rewrite changed
    rate intervals from the percentile bootstrap to Wilson on purpose; everything else must match)."""

    def strip(x: object) -> object:
        if isinstance(x, dict):
            return {
                k: (
                    {"value": v["value"], "n": v["n"]}
                    if k in ("harmful_refusal", "false_positives") and isinstance(v, dict) and "low" in v
                    else strip(v)
                )
                for k, v in x.items()
                if k != "version"
            }
        return [strip(v) for v in x] if isinstance(x, list) else x

    return strip(json.loads(path.read_text()))


def max_relative_difference(a: object, b: object) -> float:
    """Largest |x - y| / max(|x|, |y|) over the numbers of two JSON trees of the same shape (inf
    when the shapes or any non-number differ). Float32 rounding differs with batch composition
    (padding), so summaries of identical outputs agree to about 1e-7, not bit for bit."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return math.inf
        return max((max_relative_difference(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return math.inf
        return max((max_relative_difference(x, y) for x, y in zip(a, b)), default=0.0)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        scale = max(abs(a), abs(b))
        return 0.0 if a == b else abs(a - b) / scale
    return 0.0 if a == b else math.inf


def demo_old_vs_new(rounds: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="steerlab-old-"))
    old = tmp / "old"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(old), OLD_REVISION], cwd=ROOT, check=True, capture_output=True
    )
    try:
        t = interleaved(
            [
                ("new", lambda: _demo(None, [], keep=tmp / "new-run")),
                ("old", lambda: _demo(str(old / "src"), [], keep=tmp / "old-run")),
            ],
            rounds,
        )
        new_s, old_s = t["new"], t["old"]
        rel = max_relative_difference(
            summary_without_rate_intervals(tmp / "new-run" / "summary.json"),
            summary_without_rate_intervals(tmp / "old-run" / "summary.json"),
        )
        same = rel <= 1e-5

        def rows(d: Path) -> dict:
            return {
                r["key"]: (r["output"], r["refused"])
                for r in map(json.loads, (d / "results.jsonl").read_text().splitlines())
            }

        same_rows = rows(tmp / "new-run") == rows(tmp / "old-run")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "old_revision": OLD_REVISION,
        "new_seconds": new_s,
        "old_seconds": old_s,
        "ratio_of_minimums": min(new_s) / min(old_s),
        "summary_identical_rate_intervals_aside": same,
        "summary_max_relative_difference": rel,
        "outputs_and_verdicts_identical": same_rows,
    }


def demo_ray_vs_local(rounds: int) -> dict:
    t = interleaved(
        [("local", lambda: _demo(None, [])), ("ray", lambda: _demo(None, ["--executor", "ray", "--actors", "2"]))],
        rounds,
    )
    local, ray = t["local"], t["ray"]
    return {
        "local_seconds": local,
        "ray_seconds": ray,
        "ratio_of_minimums": min(ray) / min(local),
        "breakdown": ray_breakdown(),
    }


def ray_breakdown() -> dict:
    """Where the Ray executor's extra time goes: starting Ray, starting 2 workers, loading the model in each."""
    import ray

    import steerlab.experiments.engine.ray_executor as rx
    from steerlab.experiments.engine.config import ModelSpec
    from steerlab.experiments.engine.worker import model_info

    t0 = time.perf_counter()
    ex = rx.RayExecutor(actors=2)
    t1 = time.perf_counter()
    ray.get([a.handle.pid.remote() for a in ex.actors])
    t2 = time.perf_counter()
    spec = ModelSpec(id="default", device="cpu")
    refs = [a.handle.call.remote(spec, model_info, ()) for a in ex.actors]
    ray.get(refs)
    t3 = time.perf_counter()
    ex.close()
    return {"ray_init_seconds": t1 - t0, "workers_up_seconds": t2 - t1, "model_load_in_2_workers_seconds": t3 - t2}


# ---------------------------------------------------------------------------- (b) and (d): generation


def _prompts() -> list[str]:
    from steerlab.data import load_shipped

    texts = [p.text for p in load_shipped("harmful_requests")[: N_PROMPTS // 2]]
    return texts + [p.text for p in load_shipped("benign_requests")[: N_PROMPTS // 2]]


def generation_tokens_per_second(rounds: int) -> dict:
    import torch

    import steerlab as sl

    lm = sl.load_model("default", device="cpu")
    prompts = _prompts()
    batch = lm.tokenize([lm.format(p) for p in prompts])  # the batch both sides generate from
    eos = lm._eos_ids()

    def plain() -> tuple[float, int]:
        start = time.perf_counter()
        with torch.inference_mode():
            out = lm.model.generate(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                do_sample=False,
                max_new_tokens=NEW_TOKENS,
                pad_token_id=lm.tokenizer.pad_token_id,
                temperature=None,
                top_p=None,
                top_k=None,
            )
        seconds = time.perf_counter() - start
        useful = 0  # tokens up to the end of each reply (EOS or the next "User:" turn), as steerlab counts them
        for row in out[:, batch.input_ids.shape[1] :].tolist():
            n = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
            text = lm.tokenizer.decode(row[:n], skip_special_tokens=True)
            cut = min((text.index(s) for s in lm.stop_strings() if s in text), default=None)
            useful += n if cut is None else len(lm.tokenizer(text[:cut], add_special_tokens=False)["input_ids"])
        return seconds, useful

    def ours() -> tuple[float, int]:
        start = time.perf_counter()
        res = lm.complete(prompts, max_new_tokens=NEW_TOKENS, batch_size=BATCH)
        return time.perf_counter() - start, sum(c.completion_tokens for c in res)

    plain(), ours()  # warm-up
    t = interleaved([("plain", plain), ("ours", ours)], rounds)
    p, s = t["plain"], t["ours"]
    best_p, best_s = min(p), min(s)
    return {
        "prompts": N_PROMPTS,
        "max_new_tokens": NEW_TOKENS,
        "batch": BATCH,
        "plain_seconds": [x[0] for x in p],
        "steerlab_seconds": [x[0] for x in s],
        "plain_useful_tokens": best_p[1],
        "steerlab_useful_tokens": best_s[1],
        "plain_tokens_generated": N_PROMPTS * NEW_TOKENS,
        "plain_useful_tokens_per_second": best_p[1] / best_p[0],
        "steerlab_useful_tokens_per_second": best_s[1] / best_s[0],
        "time_ratio_of_minimums": best_s[0] / best_p[0],
    }


def sampling_overhead(rounds: int) -> dict:
    import torch
    from transformers import LogitsProcessorList

    import steerlab as sl
    from steerlab.models.sampling import SeededSampler

    lm = sl.load_model("default", device="cpu")
    batch = lm.tokenize([lm.format(p) for p in _prompts()])
    common = dict(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS,
        pad_token_id=lm.tokenizer.pad_token_id,
    )

    def plain() -> None:
        torch.manual_seed(0)
        with torch.inference_mode():
            lm.model.generate(**common, do_sample=True, temperature=0.8, top_k=0, top_p=1.0)

    def seeded() -> None:
        sampler = SeededSampler(list(range(N_PROMPTS)), 0.8, NEW_TOKENS)
        with torch.inference_mode():
            lm.model.generate(
                **common,
                do_sample=False,
                temperature=None,
                top_k=None,
                top_p=None,
                logits_processor=LogitsProcessorList([sampler]),
            )

    plain(), seeded()
    t = interleaved([("plain", lambda: timed(plain)), ("seeded", lambda: timed(seeded))], rounds)
    p, s = t["plain"], t["seeded"]
    paired = sorted(b / a for a, b in zip(p, s))
    return {
        "rows": N_PROMPTS,
        "tokens_per_row": NEW_TOKENS,
        "plain_seconds": p,
        "seeded_seconds": s,
        "ratio_of_minimums": min(s) / min(p),
        "median_paired_ratio": statistics.median(paired),
    }


# ---------------------------------------------------------------------------- report


def _summary_verdict(d: dict) -> str:
    rel = d.get("summary_max_relative_difference")
    if rel is None:  # a result from before the tolerance was recorded: exact comparison only
        return "identical" if d["summary_identical_rate_intervals_aside"] else "not bit-identical"
    if rel == 0:
        return "identical"
    return f"equal to float32 rounding (max relative difference {rel:.1e})" if rel <= 1e-5 else f"DIFFERENT ({rel:.1e})"


def write_docs(res: dict) -> None:
    lines = [
        "## Experiment engine",
        "",
        f"Measured {res['date']} on {res['cores']} CPU cores, torch {res['torch']}, default model (fp32); "
        f"load average before the run {res['load_before']:.1f}, after {res.get('load_after', float('nan')):.1f}. "
        "Headline ratios are ratios of the fastest runs (noise on a shared machine only adds time); "
        "all times are in `bench/results/engine.json`.",
        "",
        "| measurement | result | target |",
        "|---|---|---|",
    ]
    if "demo" in res:
        d = res["demo"]
        lines.append(
            f"| `steerlab demo`, engine ÷ the runner it replaced ({d['old_revision']}) | **{d['ratio_of_minimums']:.2f}** "
            f"({min(d['new_seconds']):.0f} s vs {min(d['old_seconds']):.0f} s) | ≤ 0.8 |"
        )
        lines.append(
            f"| the two demos' `summary.json`, rate intervals aside (now Wilson) / every reply and verdict | "
            f"**{_summary_verdict(d)} / "
            f"{'identical' if d['outputs_and_verdicts_identical'] else 'DIFFERENT'}** | identical |"
        )
    if "generation" in res:
        g = res["generation"]
        lines.append(
            f"| batched generation, useful tokens/s: `complete` vs plain HF `generate` ({g['prompts']} prompts, "
            f"batch {g['batch']}, ≤ {g['max_new_tokens']} new tokens) | **{g['steerlab_useful_tokens_per_second']:.1f} "
            f"vs {g['plain_useful_tokens_per_second']:.1f}** (time ratio {g['time_ratio_of_minimums']:.2f}) | (report) |"
        )
    if "sampling" in res:
        s = res["sampling"]
        lines.append(
            f"| sampling with per-row seeds ÷ plain `generate` sampling ({s['rows']} rows × {s['tokens_per_row']} "
            f"tokens) | **{s['ratio_of_minimums']:.3f}** (median paired {s['median_paired_ratio']:.3f}) | ≤ 1.05 |"
        )
    if "ray" in res:
        r = res["ray"]
        b = r["breakdown"]
        lines.append(
            f"| `steerlab demo`, Ray executor with 2 workers ÷ local executor | **{r['ratio_of_minimums']:.2f}** "
            f"({min(r['ray_seconds']):.0f} s vs {min(r['local_seconds']):.0f} s) | (report) |"
        )
        lines += [
            "",
            f"Where the Ray run's extra time goes on 2 cores: starting Ray {b['ray_init_seconds']:.1f} s, starting "
            f"2 workers {b['workers_up_seconds']:.1f} s, loading the model in both {b['model_load_in_2_workers_seconds']:.1f} s; "
            "then each worker runs with one thread, so two workers on two cores do about the work of one "
            "two-threaded local process. Ray pays off with more devices, not on a laptop.",
        ]
    if "generation" in res:
        g = res["generation"]
        lines += [
            "",
            f"Useful tokens: plain `generate` produced {g['plain_tokens_generated']} tokens of which "
            f"{g['plain_useful_tokens']} belong to the replies (the rest follow the end of turn: the base model "
            f"goes on to write the next `User:` turn); steerlab's rows stop at the end of turn "
            f"({g['steerlab_useful_tokens']} tokens).",
        ]
    lines += ["", "Command: `python -m bench.bench_engine` (part of `make bench`).", ""]
    write_section(DOCS, "## Experiment engine", "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    import torch

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds for (b) and (d)")
    ap.add_argument("--demo-rounds", type=int, default=2, help="interleaved rounds for the demo timings")
    ap.add_argument("--only", nargs="*", choices=["demo", "generation", "sampling", "ray"], default=None)
    args = ap.parse_args(argv)
    res: dict = {"date": dt.date.today().isoformat(), "cores": os.cpu_count(), "torch": torch.__version__}
    if RESULTS.exists():
        prev = json.loads(RESULTS.read_text())
        res.update({k: prev[k] for k in ("demo", "generation", "sampling", "ray") if k in prev})
    res["load_before"], res["uptime_before"] = _load()
    todo = args.only or ["sampling", "generation", "demo", "ray"]
    if "sampling" in todo:
        res["sampling"] = sampling_overhead(args.rounds)
    if "generation" in todo:
        res["generation"] = generation_tokens_per_second(args.rounds)
    if "demo" in todo:
        res["demo"] = demo_old_vs_new(args.demo_rounds)
    if "ray" in todo:
        res["ray"] = demo_ray_vs_local(args.demo_rounds)
    res["load_after"], res["uptime_after"] = _load()
    write_json(RESULTS, res)
    write_docs(res)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
