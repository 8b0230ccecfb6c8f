"""Generation and prefill in bf16: ``python -m bench.bench_bf16_generation [--models default,instruct]``.

Per model: steerlab's ``complete`` in bfloat16 versus plain Hugging Face ``model.generate`` in
float32, the same 32 shipped prompts (chat-formatted), batch 8 and 32, exactly ``--new-tokens``
greedy tokens per row on both sides, interleaved rounds in one process (:func:`bench._bf16.throughput`);
the fraction of the machine's measured ``torch.mm`` 2048² peak and copy bandwidth each side reaches;
a decode-step profile (bare cached forward, LM head share). Then the default model's bf16 prefill
at 100 / 1,000 / 4,000 prompt tokens (:func:`bench.serve_prefill.measure`) and the attention
implementation in use. Writes bench/results/bf16_generation.json and the
"## bf16 generation" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import json
from pathlib import Path
from typing import Any

from bench._bf16 import (
    bf16_kind,
    decode_profile,
    load_avg,
    machine_fraction,
    machine_peaks,
    run_header,
    shipped_prompts,
    throughput,
)
from bench._docs import DOCS, write_json, write_section

RESULTS = Path(__file__).parent / "results" / "bf16_generation.json"
COMMAND = "python -m bench.bench_bf16_generation"


def run_model(spec: str, batches: list[int], new_tokens: int, rounds: int, peaks: dict[str, float]) -> dict[str, Any]:
    import steerlab as sl

    ref = sl.load_model(spec, device="cpu", dtype="float32")
    low = sl.load_model(spec, device="cpu", dtype="bfloat16")
    harmful, benign = shipped_prompts()
    prompts = [*harmful, *benign]
    out: dict[str, Any] = {"model_id": ref.model_id, "attn_implementation": low.model.config._attn_implementation}
    runs = []
    for b in batches:
        r = throughput(ref, low, prompts, batch=b, new_tokens=new_tokens, rounds=rounds)
        r["fraction_hf_fp32"] = machine_fraction(ref, r["tokens_per_s"]["hf_fp32"], b, peaks)
        r["fraction_steerlab_bf16"] = machine_fraction(low, r["tokens_per_s"]["steerlab_low"], b, peaks)
        runs.append(r)
        print(json.dumps(r), flush=True)
    out["throughput"] = runs
    out["profile"] = decode_profile(low, prompts, batches[0])
    print(json.dumps(out["profile"]), flush=True)
    del ref, low
    gc.collect()
    return out


def prefill(lengths: list[int]) -> dict[str, Any]:
    import steerlab as sl
    from bench.serve_prefill import measure

    lm = sl.load_model("default", device="cpu", dtype="bfloat16")
    rows = []
    for n in lengths:
        p, s = measure(lm, n)
        rows.append({"n": n, "prefill_s": p, "step_s": s, "load": load_avg()})
        print(json.dumps(rows[-1]), flush=True)
    return {"attn_implementation": lm.model.config._attn_implementation, "rows": rows}


def markdown(res: dict[str, Any]) -> str:
    pk = res["peaks"]
    lines = [
        "## bf16 generation",
        "",
        f"`{COMMAND}` ({res['date']}, torch {res['torch']}, {res['threads']} threads; CPU bf16 matmul: {bf16_kind(res)}; load average at start"
        f" {res['load_start']}). Machine peaks measured in the same process: `torch.mm` 2048²"
        f" {pk['mm_gflops_float32']:.0f} GFLOP/s fp32, {pk['mm_gflops_bfloat16']:.0f} GFLOP/s bf16; copy of a"
        f" 512 MB tensor {pk['copy_gb_per_s']:.1f} GB/s (read + write).",
        "",
        f"Greedy generation, exactly {res['new_tokens']} new tokens per row (end-of-sequence suppressed) on the same",
        "chat-formatted shipped prompts; plain Hugging Face `model.generate` in float32 against steerlab's `complete`",
        f"in bfloat16, {res['rounds']} interleaved rounds, medians. Machine fractions: FLOP/s counted as 2 × parameters",
        "per token against the dtype's matmul peak; weight bytes read per step (every parameter once) against the copy",
        "bandwidth.",
        "",
        "| model | batch | HF fp32 tok/s | steerlab bf16 tok/s | ratio | fp32 % peak FLOP / BW | bf16 % peak FLOP / BW | load before → after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for spec, m in res["models"].items():
        for r in m["throughput"]:
            f32, f16 = r["fraction_hf_fp32"], r["fraction_steerlab_bf16"]
            lines.append(
                f"| {spec} | {r['batch']} | {r['tokens_per_s']['hf_fp32']:.1f} | {r['tokens_per_s']['steerlab_low']:.1f}"
                f" | **{r['ratio']:.2f}×** | {f32['flops_fraction']:.0%} / {f32['bandwidth_fraction']:.0%}"
                f" | {f16['flops_fraction']:.0%} / {f16['bandwidth_fraction']:.0%} | {r['load_before']} → {r['load_after']} |"
            )
    lines += [
        "",
        "Decode-step profile (bf16): one step through steerlab's `complete` (prefill subtracted), a bare cached",
        "forward of the model (no `generate` machinery), and the LM head alone.",
        "",
        "| model | batch | step via complete, ms | bare forward, ms | LM head, ms (share of bare) | vocab rows | attention | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for spec, m in res["models"].items():
        p = m["profile"]
        lines.append(
            f"| {spec} | {p['batch']} | {p['generate_step_ms']:.0f} | {p['bare_step_ms']:.0f} | {p['head_ms']:.0f}"
            f" ({p['head_share_of_bare_step']:.0%}) | {p['vocab_rows']} | {m['attn_implementation']} | {p['load']} |"
        )
    if "prefill" in res:
        pf = res["prefill"]
        lines += [
            "",
            f"Prefill of one prompt, default model in bf16 (`bench.serve_prefill.measure`; attention: {pf['attn_implementation']}):",
            "",
            "| prompt tokens | prefill s | tokens/s | s per 1,000 tokens | decode step ms after it | load |",
            "|---|---|---|---|---|---|",
        ]
        for r in pf["rows"]:
            lines.append(
                f"| {r['n']} | {r['prefill_s']:.2f} | {r['n'] / r['prefill_s']:.0f} | {1000 * r['prefill_s'] / r['n']:.2f}"
                f" | {r['step_s'] * 1000:.0f} | {r['load']} |"
            )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog=COMMAND, description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--models", default="default,instruct")
    ap.add_argument("--batches", default="8,32")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--prefill", default="100,1000,4000", help="prompt lengths ('' to skip)")
    ap.add_argument("--render-only", action="store_true", help="rewrite the docs section from the results file")
    a = ap.parse_args(argv)
    if a.render_only:
        res = json.loads(RESULTS.read_text())
    else:
        res = {
            **run_header(),
            "new_tokens": a.new_tokens,
            "rounds": a.rounds,
            "peaks": machine_peaks(),
        }
        print(json.dumps(res), flush=True)
        batches = [int(x) for x in a.batches.split(",")]
        res["models"] = {s: run_model(s, batches, a.new_tokens, a.rounds, res["peaks"]) for s in a.models.split(",")}
        if a.prefill:
            res["prefill"] = prefill([int(x) for x in a.prefill.split(",")])
        res["load_end"] = load_avg()
        write_json(RESULTS, res)
    write_section(DOCS, "## bf16 generation", markdown(res))
    print(markdown(res))
    return res


if __name__ == "__main__":
    main()
