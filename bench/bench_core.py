"""Core overheads on the default model (Gemma 3 270M), CPU: ``python -m bench.bench_core``.

(a) steered ÷ plain ``model.generate`` time, batch 8, exactly 64 new greedy tokens, with one
    ``Add`` at one layer and at all layers (targets ≤ 1.02 and ≤ 1.05);
(b) ``extract`` of 32 pairs at all layers ÷ one plain forward pass over the same token batches
    through the decoder stack sliced at the deepest layer, no LM head (target ≤ 1.1);
(c) a 7-strength sweep as per-row strengths in one 7-row batch ÷ 7 sequential one-row passes.

Conditions are interleaved round by round and medians reported, because the machine is
shared. Writes ``bench/results/core.json`` and the "## Core" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench._docs import write_json, write_section

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "core.json"
DOCS = ROOT / "docs" / "benchmarks.md"
COMMAND = "python -m bench.bench_core"

BATCH = 8  # rows per generate call
NEW_TOKENS = 64  # forced: min_new_tokens = max_new_tokens
STEER_LAYER = 6  # the one-layer condition
N_PAIRS = 32  # contrast pairs for the extraction benchmark
SWEEP = [-0.2, -0.1, -0.05, 0.0, 0.05, 0.1, 0.2]  # 7 strengths (× activation-norm-scaled vector)
TARGETS = {"steer_one_layer": 1.02, "steer_all_layers": 1.05, "extract_vs_forward": 1.1}


# ---------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(conditions: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Run every condition once per round (order rotated each round), after one warm-up round."""
    names = list(conditions)
    for name in names:
        conditions[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(timed(conditions[name]))
    return times


def ratio_summary(num: Sequence[float], den: Sequence[float]) -> dict[str, float]:
    """Ratio of the fastest runs, median of the per-round ratios (paired), and ratio of the medians.

    Noise on a shared machine only ever adds time, so the fastest of N runs is the best
    estimate of each workload's cost; the ratio of minimums is the headline number.
    """
    return {
        "ratio_of_minimums": min(num) / min(den),
        "median_paired_ratio": statistics.median(a / b for a, b in zip(num, den)),
        "ratio_of_medians": statistics.median(num) / statistics.median(den),
    }


# ---------------------------------------------------------------------------- workloads


def prompts(lm: Any, n: int) -> list[str]:
    from steerlab.data import load_shipped

    rows = load_shipped("harmful_requests")[: n // 2] + load_shipped("benign_requests")[: n - n // 2]
    return [lm.format(p.text) for p in rows]


def plain_generate(lm: Any, texts: Sequence[str]) -> Callable[[], torch.Tensor]:
    """A closure running ``model.generate`` on ``texts`` for exactly NEW_TOKENS greedy tokens."""
    batch = lm.tokenize(list(texts))

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return lm.model.generate(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                do_sample=False,
                max_new_tokens=NEW_TOKENS,
                min_new_tokens=NEW_TOKENS,
                pad_token_id=lm.tokenizer.pad_token_id,
                temperature=None,
                top_p=None,
                top_k=None,
            )

    return run


def steered(lm: Any, run: Callable[[], torch.Tensor], *interventions: Any) -> Callable[[], torch.Tensor]:
    from steerlab.interventions.base import intervene

    def go() -> torch.Tensor:
        with intervene(lm.model, *interventions):
            return run()

    return go


@contextmanager
def truncated_stack(lm: Any, deepest: int) -> Iterator[nn.Module]:
    """The decoder stack with its layer list temporarily cut after ``deepest``."""
    from steerlab.models.layers import base_model

    base = base_model(lm.model)
    full = base.layers
    base.layers = nn.ModuleList(list(full)[: deepest + 1])
    try:
        yield base
    finally:
        base.layers = full


def bench_generation(lm: Any, vec: Any, repeats: int) -> dict[str, Any]:
    from steerlab.interventions.add import Add

    run = plain_generate(lm, prompts(lm, BATCH))
    out = run()
    assert out.shape[1] - lm.tokenize(prompts(lm, BATCH)).input_ids.shape[1] == NEW_TOKENS
    times = interleaved(
        {
            "plain": run,
            "one_layer": steered(lm, run, Add(vec, strength=0.1, layers=STEER_LAYER)),
            "all_layers": steered(lm, run, Add(vec, strength=0.1, layers="all")),
        },
        repeats,
    )
    return {
        "seconds": times,
        "steer_one_layer": ratio_summary(times["one_layer"], times["plain"]),
        "steer_all_layers": ratio_summary(times["all_layers"], times["plain"]),
    }


def bench_extraction(lm: Any, repeats: int) -> dict[str, Any]:
    from steerlab.data import load_shipped
    from steerlab.vectors.extract import Example, _encode, extract

    pairs = load_shipped("refusal_pairs")[:N_PAIRS]
    pos = [Example(p.prompt, p.positive) for p in pairs]
    neg = [Example(p.prompt, p.negative) for p in pairs]
    both = pos + neg
    deepest = lm.n_layers - 1
    batches = [_encode(lm, both[i : i + lm.batch_size]) for i in range(0, len(both), lm.batch_size)]

    def reference() -> None:
        with torch.inference_mode(), truncated_stack(lm, deepest) as stack:
            for b in batches:
                stack(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False)

    times = interleaved(
        {
            "forward": reference,
            "extract": lambda: extract(lm, pos, neg, "all"),
        },
        repeats,
    )
    return {
        "seconds": times,
        "extract_vs_forward": ratio_summary(times["extract"], times["forward"]),
        "n_pairs": N_PAIRS,
        "layers": lm.n_layers,
        "batches": len(batches),
    }


def bench_sweep(lm: Any, vec: Any, repeats: int) -> dict[str, Any]:
    from steerlab.interventions.add import Add

    text = prompts(lm, 1)[0]
    batched = steered(lm, plain_generate(lm, [text] * len(SWEEP)), Add(vec, strength=SWEEP, layers=STEER_LAYER))
    singles = [steered(lm, plain_generate(lm, [text]), Add(vec, strength=s, layers=STEER_LAYER)) for s in SWEEP]

    def sequential() -> None:
        for go in singles:
            go()

    times = interleaved({"batched": batched, "sequential": sequential}, repeats)
    return {
        "seconds": times,
        "sweep_batched_vs_sequential": ratio_summary(times["batched"], times["sequential"]),
        "strengths": SWEEP,
    }


def bench_profile(lm: Any, vec: Any) -> dict[str, Any]:
    """Seconds spent inside steerlab's hook code during one all-layer steered generate (cProfile).

    An upper bound on the steering overhead that the machine's load cannot blur: cProfile
    inflates Python time, and the hook code is Python plus a few small tensor ops.
    """
    import cProfile
    import pstats

    from steerlab.interventions.add import Add

    run = plain_generate(lm, prompts(lm, BATCH))
    go = steered(lm, run, Add(vec, strength=0.1, layers="all"))
    go()
    plain_seconds = statistics.median(timed(run) for _ in range(3))
    prof = cProfile.Profile()
    prof.enable()
    go()
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    hook = sum(
        ct
        for (f, _, name), (_, _, _, ct, _) in stats.items()
        if f.endswith("interventions/hooks.py") and name in ("_run", "_track")
    )
    return {
        "hook_code_seconds": hook,
        "plain_generate_seconds": plain_seconds,
        "hook_share_of_plain": hook / plain_seconds,
    }


# ---------------------------------------------------------------------------- report


def markdown(res: dict[str, Any]) -> str:
    """The "## Core" section of docs/benchmarks.md."""
    g, e, s = res["generation"], res["extraction"], res["sweep"]

    def row(what: str, r: dict[str, float], target: float | None) -> str:
        verdict = "" if target is None else ("✅" if r["ratio_of_minimums"] <= target else "❌")
        tgt = f"≤ {target}" if target is not None else "(report)"
        return (
            f"| {what} | **{r['ratio_of_minimums']:.3f}** | {r['median_paired_ratio']:.3f} | "
            f"{r['ratio_of_medians']:.3f} | {tgt} {verdict} |"
        )

    # recompute from the raw times, so results files from older runs render the same way
    g = {
        **g,
        "steer_one_layer": ratio_summary(g["seconds"]["one_layer"], g["seconds"]["plain"]),
        "steer_all_layers": ratio_summary(g["seconds"]["all_layers"], g["seconds"]["plain"]),
    }
    e = {**e, "extract_vs_forward": ratio_summary(e["seconds"]["extract"], e["seconds"]["forward"])}
    s = {**s, "sweep_batched_vs_sequential": ratio_summary(s["seconds"]["batched"], s["seconds"]["sequential"])}

    med = {k: statistics.median(v) for k, v in g["seconds"].items()}
    prof = res.get("profile")
    note = (
        []
        if prof is None
        else [
            f"Profile (cProfile, one all-layer steered generate): steerlab's hook code (`HookManager._run`, "
            f"`_track`, and the `Add` function they call) took {prof['hook_code_seconds']:.2f} s against "
            f"{prof['plain_generate_seconds']:.2f} s for the plain generate, i.e. at most "
            f"{100 * prof['hook_share_of_plain']:.1f} % overhead; ratios further from 1 are the shared machine's noise.",
            "",
        ]
    )
    return "\n".join(
        [
            "## Core",
            "",
            f"Default model (Gemma 3 270M, fp32), CPU, {res['machine']['cores']} cores, torch {res['torch']}, "
            f"{res['date']}; {res['repeats']} interleaved rounds after a warm-up. Timing noise on this shared "
            "machine only adds time, so the headline is the ratio of the fastest runs (ratio of minimums); the "
            "median of per-round ratios and the ratio of medians are shown beside it.",
            "",
            "```",
            COMMAND,
            "```",
            "",
            "| measurement | ratio of minimums | median paired ratio | ratio of medians | target |",
            "|---|---:|---:|---:|---|",
            row(
                f"steered ÷ plain `generate`, `Add` at layer {STEER_LAYER} (batch {BATCH}, {NEW_TOKENS} new tokens)",
                g["steer_one_layer"],
                TARGETS["steer_one_layer"],
            ),
            row(
                f"steered ÷ plain `generate`, `Add` at all {e['layers']} layers",
                g["steer_all_layers"],
                TARGETS["steer_all_layers"],
            ),
            row(
                f"`extract` {e['n_pairs']} pairs at all {e['layers']} layers ÷ truncated plain forward",
                e["extract_vs_forward"],
                TARGETS["extract_vs_forward"],
            ),
            row(
                f"{len(s['strengths'])}-strength sweep: one per-row batch ÷ {len(s['strengths'])} sequential passes",
                s["sweep_batched_vs_sequential"],
                None,
            ),
            "",
            f"Median seconds: plain generate {med['plain']:.2f}, one layer {med['one_layer']:.2f}, all layers "
            f"{med['all_layers']:.2f}; extract {statistics.median(e['seconds']['extract']):.2f} vs forward "
            f"{statistics.median(e['seconds']['forward']):.2f}; sweep batched "
            f"{statistics.median(s['seconds']['batched']):.2f} vs sequential "
            f"{statistics.median(s['seconds']['sequential']):.2f}. Raw times: `bench/results/core.json`.",
            "",
            *(
                [
                    f'Loading the default model from its float cache (`load_model("default")`, second and later '
                    f"loads): median {statistics.median(res['load_cached_seconds']):.1f} s of 3 (target ≤ 5 s).",
                    "",
                ]
                if res.get("load_cached_seconds")
                else []
            ),
            *note,
        ]
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per benchmark (≥5 recommended)")
    parser.add_argument(
        "--only",
        choices=["generation", "extraction", "sweep", "profile"],
        action="append",
        help="run only these parts (default: all), merged into the existing results file",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite the docs section from bench/results/core.json without measuring",
    )
    args = parser.parse_args(argv)
    if args.render_only:
        res = json.loads(RESULTS.read_text())
        write_section(DOCS, "## Core", markdown(res))
        return res

    import steerlab
    from steerlab.vectors.random import random_like

    steerlab.load_model("default", device="cpu")  # builds the float cache if this machine has none
    load_seconds = [timed(lambda: steerlab.load_model("default", device="cpu")) for _ in range(3)]
    lm = steerlab.load_model("default", device="cpu")
    vec = random_like(
        steerlab.extract(lm, *_tiny_contrast(), layers=[STEER_LAYER], normalization="activation_norm")[STEER_LAYER]
    )[0]
    parts = args.only or ["generation", "extraction", "sweep", "profile"]
    res: dict[str, Any] = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "steerlab": steerlab.__version__,
        "machine": {
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(),
            "loadavg_start": os.getloadavg(),
        },
        "model": lm.model_id,
        "load_cached_seconds": load_seconds,
        "batch": BATCH,
        "new_tokens": NEW_TOKENS,
        "repeats": args.repeats,
    }
    for part in parts:
        fn = {
            "generation": lambda: bench_generation(lm, vec, args.repeats),
            "extraction": lambda: bench_extraction(lm, args.repeats),
            "sweep": lambda: bench_sweep(lm, vec, args.repeats),
            "profile": lambda: bench_profile(lm, vec),
        }[part]
        res[part] = fn()
        print(part, json.dumps({k: v for k, v in res[part].items() if k != "seconds"}, indent=1))
    res["machine"]["loadavg_end"] = os.getloadavg()
    if args.only and RESULTS.exists():  # keep the other parts from the last full run
        old = json.loads(RESULTS.read_text())
        res = {
            **old,
            **{p: res[p] for p in parts},
            "load_cached_seconds": load_seconds,
            "partial_rerun": {"parts": parts, "date": res["date"]},
        }
    write_json(RESULTS, res, indent=1)
    if all(k in res for k in ("generation", "extraction", "sweep")):
        write_section(DOCS, "## Core", markdown(res))
    print(f"wrote {RESULTS.relative_to(ROOT)} and the Core section of {DOCS.relative_to(ROOT)}")
    return res


def _tiny_contrast() -> tuple[list[Any], list[Any]]:
    """A few refusal pairs: the steering vector's direction only sets realistic magnitudes."""
    from steerlab.data import load_shipped
    from steerlab.vectors.extract import Example

    pairs = load_shipped("refusal_pairs")[:8]
    return [Example(p.prompt, p.positive) for p in pairs], [Example(p.prompt, p.negative) for p in pairs]


if __name__ == "__main__":
    main()
