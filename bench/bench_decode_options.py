"""What is left of the decode step, tried: ``python -m bench.bench_decode_options [--model default]``.

Plain Hugging Face ``generate`` on the model in the dtype ``auto`` picks (bf16 on a CPU with native
bf16 matmul, else fp32; ``--dtype`` forces one), the same 8 chat-formatted shipped prompts and
exactly ``--new-tokens`` greedy tokens per row, three ways in interleaved rounds in one process:
the dynamic cache (what steerlab's ``complete`` uses), a static cache
(``cache_implementation="static"``), and a static cache with the model's forward compiled by
``torch.compile`` (inductor, the default mode). The first call of each way is a warm-up; for the
compiled way its time (compilation included) is reported separately. Also checks that the three
produce the same tokens. Writes bench/results/decode_options.json and the "## Decode options
tried" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench._bf16 import load_avg, shipped_prompts
from bench._docs import DOCS, write_json, write_section

RESULTS = Path(__file__).parent / "results" / "decode_options.json"
COMMAND = "python -m bench.bench_decode_options"
WAYS = ("dynamic cache", "static cache", "static cache + torch.compile")


def _generate(lm: Any, enc: dict[str, torch.Tensor], new_tokens: int, way: str) -> torch.Tensor:
    kwargs: dict[str, Any] = {
        "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens,
        "do_sample": False,
        "pad_token_id": lm.tokenizer.pad_token_id or lm.tokenizer.eos_token_id,
    }
    if way != "dynamic cache":
        kwargs["cache_implementation"] = "static"
    with torch.inference_mode():
        return lm.model.generate(**enc, **kwargs)


def run(model: str, batch: int, new_tokens: int, rounds: int, dtype: str = "auto") -> dict[str, Any]:
    import steerlab as sl

    lm = sl.load_model(model, device="cpu", dtype=dtype)
    harmful, benign = shipped_prompts()
    prompts = [*harmful, *benign][:batch]
    lm.tokenizer.padding_side = "left"
    enc = lm.tokenizer([lm.format(p) for p in prompts], return_tensors="pt", padding=True)
    enc = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    eager_forward = lm.model.forward
    compiled_forward = torch.compile(eager_forward)

    def call(way: str) -> tuple[float, torch.Tensor]:
        lm.model.forward = compiled_forward if way.endswith("torch.compile") else eager_forward
        t = time.perf_counter()
        out = _generate(lm, enc, new_tokens, way)
        return time.perf_counter() - t, out

    first: dict[str, float] = {}
    outputs: dict[str, torch.Tensor] = {}
    for way in WAYS:  # warm-up; the compiled way compiles here
        first[way], outputs[way] = call(way)
    times: dict[str, list[float]] = {w: [] for w in WAYS}
    loads = [load_avg()]
    for _ in range(rounds):
        for way in WAYS:
            times[way].append(call(way)[0])
        loads.append(load_avg())
    lm.model.forward = eager_forward
    same = {w: bool(torch.equal(outputs[w], outputs[WAYS[0]])) for w in WAYS[1:]}
    med = {w: statistics.median(t) for w, t in times.items()}
    return {
        "model": model,
        "model_id": lm.model_id,
        "dtype": str(lm.model.dtype).removeprefix("torch."),
        "dtype_reason": lm.dtype_reason,
        "batch": batch,
        "new_tokens": new_tokens,
        "rounds": rounds,
        "seconds": times,
        "median_s": med,
        "tokens_per_s": {w: batch * new_tokens / s for w, s in med.items()},
        "first_call_s": first,
        "same_tokens_as_dynamic": same,
        "loads": loads,
    }


def write_docs(res: dict[str, Any]) -> None:
    base = res["median_s"][WAYS[0]]
    lines = [
        "## Decode options tried",
        "",
        f"`{COMMAND}` ({res['date']}, torch {res['torch']}, transformers {res['transformers']}). "
        f"Hugging Face `generate` on the {res['model']} model in {res['dtype']} "
        f"({res['dtype_reason']}), batch {res['batch']}, exactly "
        f"{res['new_tokens']} greedy tokens per row, {res['rounds']} interleaved rounds after a warm-up, "
        "medians. Load average (1/5/15 min) before the rounds and after each: "
        f"{' → '.join(str(x) for x in res['loads'])}.",
        "",
        "| way | median s | tok/s | dynamic ÷ this | first call s | same tokens as dynamic |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for w in WAYS:
        same = "—" if w == WAYS[0] else ("yes" if res["same_tokens_as_dynamic"][w] else "no")
        lines.append(
            f"| {w} | {res['median_s'][w]:.2f} | {res['tokens_per_s'][w]:.1f} | "
            f"{base / res['median_s'][w]:.2f}× | {res['first_call_s'][w]:.1f} | {same} |"
        )
    static, compiled = (base / res["median_s"][w] for w in WAYS[1:])
    verdict = "pays" if compiled >= 1.1 else "does not pay"
    lines += [
        "",
        f"A static cache runs at {static:.2f}× the dynamic cache's speed and the compiled static-cache decode at "
        f"{compiled:.2f}× (its first call, compilation included, took {res['first_call_s'][WAYS[2]]:.0f} s). "
        f"On this CPU compiling the decode step {verdict} at this size"
        + (
            ", so steerlab's `complete` keeps the dynamic cache and eager mode"
            if verdict == "does not pay"
            else "; steerlab's `complete` still uses the dynamic cache and eager mode"
        )
        + '; the decode-step profile in "bf16 generation" shows where the time goes.',
        "",
    ]
    write_section(DOCS, "## Decode options tried", "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    import transformers

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dtype", default="auto", help="auto (as steerlab picks), float32 or bfloat16")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    res = run(args.model, args.batch, args.new_tokens, args.rounds, args.dtype)
    res.update(
        {
            "date": dt.datetime.now().isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }
    )
    print(json.dumps(res), flush=True)
    write_json(RESULTS, res)
    write_docs(res)


if __name__ == "__main__":
    main()
