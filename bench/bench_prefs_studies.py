"""Choice probabilities from one log-prob pass vs K sampled answers; writes bench/results/prefs_studies.json.

For pairwise questions over shipped tasks (both orders), on the default model:
  * one pass: P(A), P(B) from ``option_logprobs`` (one forward pass per row), P(first) = P(A)/(P(A)+P(B));
  * K samples: K sampled replies per row (temperature 1, max 3 new tokens), parsed, P(first) = share of "A"
    among parsed replies;
  * the cost of the vocabulary log-sum-exp at the one position each row needs, against the forward pass.
Reported: wall and CPU time of each (median of ``--repeats``), their ratio, and the agreement
of the two estimates (mean |difference|, Pearson r, majority agreement), beside the
|difference| that binomial noise of K samples alone would give.

With ``--studies [NAME ...]`` it instead runs the study configs (default: all seven
``src/steerlab/experiments/configs/prefs_*.yaml``) on the default model, each from scratch in a
temporary run directory, and records wall time, this process's CPU time (user + system) and
the load average into ``bench/results/prefs_studies_runs.json``.

Run: python -m bench.bench_prefs_studies [--pairs 8] [--k 10] [--repeats 3]
     python -m bench.bench_prefs_studies --studies [prefs_revealed ...]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from steerlab._io import atomic_write_json

OUT = Path(__file__).parent / "results" / "prefs_studies.json"
RUNS = Path(__file__).parent / "results" / "prefs_studies_runs.json"
CONFIGS = Path(__file__).parents[1] / "src" / "steerlab" / "experiments" / "configs"


def _timed(fn: Any) -> tuple[Any, float, float]:
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    out = fn()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return out, time.perf_counter() - t0, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def time_studies(names: list[str]) -> list[dict[str, Any]]:
    """Run each study config from scratch; wall time, CPU time and load of each."""
    import tempfile

    from steerlab.experiments import run_experiment

    out = []
    for name in names or sorted(p.stem for p in CONFIGS.glob("prefs_*.yaml")):
        with tempfile.TemporaryDirectory() as tmp:
            load = os.getloadavg()
            (report, wall, cpu) = _timed(
                lambda name=name, tmp=tmp: run_experiment(CONFIGS / f"{name}.yaml", Path(tmp) / "run")
            )
            out.append(
                {
                    "config": name,
                    "wall_s": round(wall, 1),
                    "cpu_s": round(cpu, 1),
                    "load_start": load,
                    "load_end": os.getloadavg(),
                    "report_written": Path(report).exists(),
                }
            )
        print(out[-1], flush=True)
    return out


def main() -> None:
    """Run the benchmark and write the JSON results."""
    import torch

    import steerlab as sl
    from steerlab.prefs.answers import choice_probabilities
    from steerlab.prefs.parsing import parse_choice
    from steerlab.prefs.tasks import load_tasks
    from steerlab.prefs.templates import pairwise_template

    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--studies", nargs="*", default=None, help="time the study configs instead")
    args = ap.parse_args()
    if args.studies is not None:
        atomic_write_json(
            RUNS, {"when": datetime.datetime.now().isoformat(timespec="seconds"), "runs": time_studies(args.studies)}
        )
        return
    torch.set_num_threads(2)
    lm = sl.load_model("default", device="cpu")
    tasks = load_tasks("shipped:pref_tasks")
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(tasks))
    template = pairwise_template("simple_preference")
    pairs = [(tasks[idx[2 * i]], tasks[idx[2 * i + 1]]) for i in range(args.pairs)]
    convs = [template.conversation(a.prompt, b.prompt) for x, y in pairs for a, b in ((x, y), (y, x))]
    n = len(convs)
    runs: dict[str, list[tuple[float, float]]] = {"one_pass": [], "sampled": []}
    load = [os.getloadavg()]
    p_pass = p_sampled = None
    unparseable = 0
    for _ in range(args.repeats):
        probs, wall, cpu = _timed(lambda: choice_probabilities(lm, convs, batch_size=n))
        runs["one_pass"].append((wall, cpu))
        p_pass = np.array([p.p_first for p in probs])
        mass = np.array([p.mass for p in probs])
        rows = [c for c in convs for _ in range(args.k)]
        seeds = [1000 * i + s for i in range(n) for s in range(args.k)]
        replies, wall, cpu = _timed(
            lambda rows=rows, seeds=seeds: lm.complete(
                rows, max_new_tokens=3, temperature=1.0, seed=seeds, batch_size=n * args.k
            )
        )
        runs["sampled"].append((wall, cpu))
        parsed = [parse_choice(r.text).value for r in replies]
        a = np.array([sum(x == "A" for x in parsed[i * args.k : (i + 1) * args.k]) for i in range(n)], dtype=float)
        b = np.array([sum(x == "B" for x in parsed[i * args.k : (i + 1) * args.k]) for i in range(n)], dtype=float)
        unparseable = int(n * args.k - a.sum() - b.sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            p_sampled = a / (a + b)
        load.append(os.getloadavg())
    med = {k: (float(np.median([w for w, _ in v])), float(np.median([c for _, c in v]))) for k, v in runs.items()}
    # the vocabulary normaliser at the one position a row needs, against the forward pass itself
    batch = lm.tokenize([lm.format(c) for c in convs])
    h, fwd_wall, fwd_cpu = _timed(lambda: lm.hidden_states(batch)[:, -1])
    with torch.inference_mode():
        _, lse_wall, lse_cpu = _timed(
            lambda: [torch.logsumexp(lm.logits_for(h[i : i + 8]).float(), -1) for i in range(0, n, 8)]
        )
    ok = ~np.isnan(p_sampled)
    diff = np.abs(p_pass[ok] - p_sampled[ok])
    noise = np.sqrt(p_pass[ok] * (1 - p_pass[ok]) / np.maximum(a[ok] + b[ok], 1))  # sd of a K-sample share
    results = {
        "when": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average_1_5_15": load,
        "rows": n,
        "pairs": args.pairs,
        "k": args.k,
        "repeats": args.repeats,
        "template": template.name,
        "one_pass_wall_s": med["one_pass"][0],
        "one_pass_cpu_s": med["one_pass"][1],
        "sampled_wall_s": med["sampled"][0],
        "sampled_cpu_s": med["sampled"][1],
        "wall_ratio_sampled_over_one_pass": med["sampled"][0] / med["one_pass"][0],
        "cpu_ratio_sampled_over_one_pass": med["sampled"][1] / med["one_pass"][1],
        "forward_wall_s": fwd_wall,
        "forward_cpu_s": fwd_cpu,
        "prompt_tokens": int(batch.attention_mask.sum()),
        "normaliser_wall_s": lse_wall,
        "normaliser_cpu_s": lse_cpu,
        "normaliser_share_of_forward_cpu": lse_cpu / fwd_cpu,
        "rows_with_parsed_samples": int(ok.sum()),
        "unparseable_samples": unparseable,
        "mean_abs_difference": float(diff.mean()),
        "expected_abs_difference_from_k_samples": float(np.sqrt(2 / np.pi) * noise.mean()),
        "pearson_r": float(np.corrcoef(p_pass[ok], p_sampled[ok])[0, 1])
        if ok.sum() > 2 and np.ptp(p_sampled[ok]) > 0
        else None,  # undefined when one side is constant
        "majority_agreement": float(np.mean((p_pass[ok] > 0.5) == (p_sampled[ok] > 0.5))),
        "mean_letter_mass": float(mass.mean()),
        "mean_p_first_one_pass": float(p_pass.mean()),
        "mean_p_first_sampled": float(np.nanmean(p_sampled)),
        "p_first_one_pass": [round(float(x), 4) for x in p_pass],
        "p_first_sampled": [None if np.isnan(x) else round(float(x), 4) for x in p_sampled],
    }
    atomic_write_json(OUT, results)
    print(
        f"wrote {OUT}: wall ratio {results['wall_ratio_sampled_over_one_pass']:.1f}, "
        f"mean |diff| {results['mean_abs_difference']:.3f}"
    )


if __name__ == "__main__":
    main()
