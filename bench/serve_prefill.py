"""How long one long prompt holds the default model: the basis of ``--max-prompt-tokens``.

``python -m bench.serve_prefill [--lengths 512,1024,2048,4096] [--rounds 2]``

For each prompt length ``n``: the prefill (one forward pass over ``n`` tokens, building the KV
cache, as ``generate`` does) and the mean of 16 decode steps after it (one token each, attending
to ``n`` cached positions). A request of ``n`` prompt tokens and ``m`` new tokens holds the model
for about ``prefill(n) + m * step(n)``; the table gives that for the server's default
``max_tokens`` (256). Lengths are measured in interleaved rounds (the machine is shared) and the
medians are reported, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

DEFAULT_MAX_TOKENS = 256


def measure(lm, n: int) -> tuple[float, float]:
    text = "The quick brown fox jumps over the lazy dog. " * (n // 8 + 8)
    ids = torch.tensor([lm.tokenizer(text, add_special_tokens=False)["input_ids"][:n]])
    with torch.inference_mode():
        t = time.perf_counter()
        out = lm.model(input_ids=ids, use_cache=True)
        prefill = time.perf_counter() - t
        cache, tok = out.past_key_values, ids[:, -1:]
        t = time.perf_counter()
        for _ in range(16):
            out = lm.model(input_ids=tok, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
        step = (time.perf_counter() - t) / 16
    return prefill, step


def main(argv: list[str] | None = None) -> None:
    import steerlab as sl

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--lengths", default="512,1024,2048,4096")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dtype", default="float32", help="the model's dtype (docs/serve.md's table: float32)")
    a = ap.parse_args(argv)
    lengths = [int(x) for x in a.lengths.split(",")]
    torch.set_num_threads(2)
    lm = sl.load_model("default", device="cpu", dtype=a.dtype)
    load_before = [round(x, 2) for x in os.getloadavg()]
    runs: dict[int, list[tuple[float, float]]] = {n: [] for n in lengths}
    for r in range(a.rounds):
        for n in lengths if r % 2 == 0 else reversed(lengths):
            runs[n].append(measure(lm, n))
    print(
        f"model {lm.model_id} ({a.dtype}); load average {load_before} before, {[round(x, 2) for x in os.getloadavg()]} after"
    )
    print("| prompt tokens | prefill s | tokens/s | decode step ms | prefill + 256 steps, s |")
    print("|---|---|---|---|---|")
    rows = []
    for n in lengths:
        prefill = statistics.median(p for p, _ in runs[n])
        step = statistics.median(s for _, s in runs[n])
        total = prefill + DEFAULT_MAX_TOKENS * step
        rows.append({"n": n, "prefill_s": prefill, "step_s": step, "request_s": total})
        print(f"| {n} | {prefill:.1f} | {n / prefill:.0f} | {step * 1000:.0f} | {total:.0f} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
