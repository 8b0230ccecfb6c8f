"""What bf16 changes and what it buys, on any device: the measurements behind
``bench/bench_bf16_parity.py``, ``bench/bench_bf16_generation.py`` and ``bench/gpu_check.py``.

Every function takes already-loaded models (one float32, one low-precision copy of the same
weights on the same device), so the same code runs on a CPU here and on a user's GPU.

- :func:`parity`: next-token top-1 agreement and KL(fp32 ‖ bf16) at the last prompt position,
  cosine of extracted mean-difference vectors, refusal-marker verdict agreement on greedy
  replies, and A/B logit differences.
- :func:`throughput`: steerlab's ``complete`` in the low-precision model versus plain Hugging
  Face ``model.generate`` in float32, the same formatted prompts and exactly ``new_tokens`` new
  tokens per row on both sides (end-of-sequence suppressed, no stop strings), interleaved rounds.
- :func:`machine_peaks`: ``torch.mm`` 2048² FLOP/s per dtype and the bandwidth of a large copy,
  to state what fraction of the machine a decode step reaches.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from bench._docs import interleaved


def load_avg() -> list[float]:
    """The 1/5/15-minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def run_header() -> dict[str, Any]:
    """What every bf16 benchmark records first: when, torch, 2 threads, the load, the CPU's bf16 flag."""
    import datetime as dt

    from steerlab.models.loading import cpu_native_bf16

    torch.set_num_threads(2)
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_start": load_avg(),
        "cpu_native_bf16": cpu_native_bf16(),  # None: torch emulates bf16 matmul on this CPU
    }


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def shipped_prompts(n_harmful: int = 16, n_benign: int = 16) -> tuple[list[str], list[str]]:
    """The first ``n`` shipped harmful and benign requests (texts)."""
    from steerlab.data.loaders import load_shipped

    return (
        [p.text for p in load_shipped("harmful_requests")[:n_harmful]],
        [p.text for p in load_shipped("benign_requests")[:n_benign]],
    )


# ---- parity ----------------------------------------------------------------------------------
def _last_logits(lm: Any, prompts: Sequence[str]) -> torch.Tensor:
    from steerlab.evals.refusal_score import last_position_logits

    rows = [
        last_position_logits(lm, lm.tokenize([lm.format(p) for p in prompts[i : i + 8]]))
        for i in range(0, len(prompts), 8)
    ]
    return torch.cat(rows)  # [N, V] float32


def logit_parity(ref: Any, low: Any, prompts: Sequence[str]) -> dict[str, float]:
    """Top-1 agreement and KL(ref ‖ low) in nats of the next-token distribution after each prompt."""
    from steerlab.evals.refusal_score import next_token_kl

    a, b = _last_logits(ref, prompts), _last_logits(low, prompts)
    kl = next_token_kl(a, b)
    lp_a, lp_b = torch.log_softmax(a.double(), -1), torch.log_softmax(b.double(), -1)
    top, top_low = a.argmax(-1), b.argmax(-1)
    top_lp_diff = (lp_a.gather(1, top[:, None]) - lp_b.gather(1, top[:, None])).abs()
    agree = top == top_low
    # where the two differ: how far apart fp32 itself put its own top-1 and bf16's choice (nats)
    flip_margins = (lp_a.gather(1, top[:, None]) - lp_a.gather(1, top_low[:, None]))[~agree, 0]
    return {
        "n_prompts": len(prompts),
        "n_top1_agree": int(agree.sum()),
        "top1_agreement": float(agree.double().mean()),
        "fp32_margin_where_they_differ": [round(float(x), 4) for x in flip_margins],
        "kl_mean": float(kl.mean()),
        "kl_max": float(kl.max()),
        "top1_logprob_absdiff_max": float(top_lp_diff.max()),
    }


def vector_parity(ref: Any, low: Any, n_pairs: int, layers: Sequence[int]) -> dict[str, Any]:
    """Cosine between mean-difference vectors extracted in each model from the shipped refusal pairs."""
    from steerlab.data.loaders import load_shipped
    from steerlab.vectors.extract import Example, extract

    pairs = load_shipped("refusal_pairs")[:n_pairs]
    pos = [Example(p.prompt, p.positive) for p in pairs]
    neg = [Example(p.prompt, p.negative) for p in pairs]
    va, vb = extract(ref, pos, neg, list(layers)), extract(low, pos, neg, list(layers))
    cos = {
        int(layer): float(torch.nn.functional.cosine_similarity(va[layer].vector, vb[layer].vector, dim=0))
        for layer in layers
    }
    return {"n_pairs": len(pairs), "cosine": cos, "cosine_min": min(cos.values())}


def verdict_parity(ref: Any, low: Any, prompts: Sequence[str], new_tokens: int) -> dict[str, Any]:
    """Refusal-marker verdicts of greedy replies in each model: how often they agree, how often the texts match."""
    from steerlab.evals.refusal_markers import marker_verdict

    ta = ref.generate(list(prompts), max_new_tokens=new_tokens)
    tb = low.generate(list(prompts), max_new_tokens=new_tokens)
    va, vb = [marker_verdict(t) for t in ta], [marker_verdict(t) for t in tb]
    return {
        "n_prompts": len(prompts),
        "new_tokens": new_tokens,
        "verdict_agreement": sum(x == y for x, y in zip(va, vb, strict=True)) / len(prompts),
        "identical_texts": sum(x == y for x, y in zip(ta, tb, strict=True)) / len(prompts),
        "refusals_ref": va.count("refusal"),
        "refusals_low": vb.count("refusal"),
    }


def ab_parity(ref: Any, low: Any, n_questions: int) -> dict[str, Any]:
    """A/B logit differences (behaviour letter minus the other) on shipped questions in each model."""
    from steerlab.evals.ab import load_ab_questions
    from steerlab.evals.ab_scoring import score_ab

    qs = load_ab_questions("shipped:corrigible-neutral-HHH", n=n_questions, seed=0).questions
    # The letter opens the reply: "(" merges with the letter in Qwen's tokenizer (as in unsupervised_ab_instruct.yaml).
    da = [s.logit_diff for s in score_ab(ref, qs, mass=False, answer_prefix="")]
    db = [s.logit_diff for s in score_ab(low, qs, mass=False, answer_prefix="")]
    diffs = [abs(x - y) for x, y in zip(da, db, strict=True)]
    return {
        "n_questions": len(qs),
        "logit_diff_absdiff_mean": statistics.fmean(diffs),
        "logit_diff_absdiff_max": max(diffs),
        "logit_diff_abs_mean_ref": statistics.fmean(abs(x) for x in da),
        "sign_agreement": sum((x > 0) == (y > 0) for x, y in zip(da, db, strict=True)) / len(qs),
    }


def parity(
    ref: Any,
    low: Any,
    *,
    harmful: Sequence[str],
    benign: Sequence[str],
    layers: Sequence[int],
    n_pairs: int = 24,
    n_ab: int = 8,
    new_tokens: int = 32,
    logit_prompts: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Every parity measurement, with the load average after each.

    ``logit_prompts`` (default: the harmful and benign prompts) are the next-token comparison's:
    one forward each, so a larger set than the generated replies' is cheap.
    """
    prompts = [*harmful, *benign]
    out: dict[str, Any] = {}
    for name, fn in [
        ("logits", lambda: logit_parity(ref, low, list(logit_prompts or prompts))),
        ("vectors", lambda: vector_parity(ref, low, n_pairs, layers)),
        ("verdicts", lambda: verdict_parity(ref, low, prompts, new_tokens)),
        ("ab", lambda: ab_parity(ref, low, n_ab)),
    ]:
        t = time.perf_counter()
        out[name] = {**fn(), "seconds": round(time.perf_counter() - t, 1), "load": load_avg()}
    return out


# ---- throughput ------------------------------------------------------------------------------
def _suppress_eos(eos: set[int]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A logits processor that forbids the end-of-sequence tokens (so every row runs to the limit)."""
    ids = sorted(eos)

    def proc(input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores[:, ids] = float("-inf")
        return scores

    return proc


def hf_generate_fp32(model: Any, tokenizer: Any, texts: Sequence[str], new_tokens: int) -> int:
    """Plain Hugging Face greedy ``generate`` of exactly ``new_tokens`` per row; tokens made."""
    tokenizer.padding_side = "left"
    enc = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    with torch.inference_mode():
        out = model.generate(
            **enc,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=tokenizer.pad_token_id,
        )
    return (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]


def steerlab_generate(lm: Any, texts: Sequence[str], new_tokens: int) -> int:
    """steerlab's ``complete`` on the same formatted texts, exactly ``new_tokens`` per row; tokens made."""
    got = lm.complete(
        list(texts),
        max_new_tokens=new_tokens,
        formatted=True,
        batch_size=len(texts),
        logits_processors=[_suppress_eos(lm._eos_ids())],
    )
    n = sum(c.completion_tokens for c in got)
    assert n == new_tokens * len(texts), (n, new_tokens, len(texts))
    return n


def throughput(
    ref: Any,
    low: Any,
    prompts: Sequence[str],
    *,
    batch: int,
    new_tokens: int,
    rounds: int,
) -> dict[str, Any]:
    """Tokens/s of HF ``generate`` in the float32 model and steerlab in the low-precision one,
    ``batch`` rows of the same formatted prompts, interleaved rounds; medians and their ratio."""
    device = str(low.device)
    texts = [low.format(p) for p in (list(prompts) * (batch // len(prompts) + 1))[:batch]]

    def run(fn: Callable[[], int]) -> Callable[[], tuple[float, int]]:
        def go() -> tuple[float, int]:
            _sync(device)
            t = time.perf_counter()
            n = fn()
            _sync(device)
            return time.perf_counter() - t, n

        return go

    load_before = load_avg()
    res = interleaved(
        [
            ("hf_fp32", run(lambda: hf_generate_fp32(ref.model, ref.tokenizer, texts, new_tokens))),
            ("steerlab_low", run(lambda: steerlab_generate(low, texts, new_tokens))),
        ],
        rounds,
    )
    rate = {k: statistics.median(n / s for s, n in v) for k, v in res.items()}
    return {
        "batch": batch,
        "new_tokens": new_tokens,
        "prompt_tokens_max": max(len(low.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts),
        "rounds": rounds,
        "seconds": {k: [round(s, 5) for s, _ in v] for k, v in res.items()},
        "tokens_per_s": rate,
        "ratio": rate["steerlab_low"] / rate["hf_fp32"],
        "load_before": load_before,
        "load_after": load_avg(),
    }


def machine_peaks(device: str = "cpu", n: int = 2048, copy_mb: int = 512, reps: int = 5) -> dict[str, float]:
    """Best-of-``reps`` ``torch.mm`` n×n FLOP/s in float32 and bfloat16, and the bandwidth
    (bytes read + written per second) of copying a ``copy_mb`` MB float32 tensor."""
    out: dict[str, float] = {}
    for dt in (torch.float32, torch.bfloat16):
        a = torch.randn(n, n, device=device).to(dt)
        b = torch.randn(n, n, device=device).to(dt)
        torch.mm(a, b)
        best = float("inf")
        for _ in range(reps):
            _sync(device)
            t = time.perf_counter()
            torch.mm(a, b)
            _sync(device)
            best = min(best, time.perf_counter() - t)
        out[f"mm_gflops_{str(dt).split('.')[-1]}"] = 2 * n**3 / best / 1e9
    src = torch.empty(copy_mb * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    out["copy_gb_per_s"] = 2 * src.numel() * 4 / best / 1e9
    return out


def machine_fraction(lm: Any, tokens_per_s: float, batch: int, peaks: dict[str, float]) -> dict[str, float]:
    """What a decode rate reaches: FLOP/s of ``2 · parameters`` per token against the matmul peak
    of the model's dtype, and weight bytes read per step (all parameters once) against the copy
    bandwidth. Attention over the cache and activations are left out (small at these lengths)."""
    params = sum(p.numel() for p in lm.model.parameters())
    elem = next(lm.model.parameters()).element_size()
    dtype = str(next(lm.model.parameters()).dtype).split(".")[-1]
    steps_per_s = tokens_per_s / batch
    return {
        "params_millions": params / 1e6,
        "flops_fraction": 2 * params * tokens_per_s / 1e9 / peaks[f"mm_gflops_{dtype}"],
        "bandwidth_fraction": params * elem * steps_per_s / 1e9 / peaks["copy_gb_per_s"],
    }


def decode_profile(lm: Any, prompts: Sequence[str], batch: int, steps: int = 8) -> dict[str, float]:
    """Where one decode step's time goes: the whole step through ``generate`` (per token), a bare
    forward with the KV cache (no generate machinery), and the LM head alone (its share)."""
    texts = [lm.format(p) for p in (list(prompts) * (batch // len(prompts) + 1))[:batch]]
    b = lm.tokenize(texts)
    model = lm.model
    with torch.inference_mode():
        out = model(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=True)
        cache, tok, mask = out.past_key_values, out.logits[:, -1:].argmax(-1), b.attention_mask
        t = time.perf_counter()
        for _ in range(steps):
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            out = model(input_ids=tok, attention_mask=mask, past_key_values=cache, use_cache=True)
            cache, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
        bare = (time.perf_counter() - t) / steps
        h = torch.randn(batch, 1, lm.hidden_size, dtype=next(model.parameters()).dtype)
        head = model.get_output_embeddings()
        head(h)
        t = time.perf_counter()
        for _ in range(steps):
            head(h)
        head_s = (time.perf_counter() - t) / steps
    t = time.perf_counter()
    steerlab_generate(lm, texts, 1)  # the prefill and one token
    one = time.perf_counter() - t
    t = time.perf_counter()
    steerlab_generate(lm, texts, steps + 1)
    gen = (time.perf_counter() - t - one) / steps  # per decode step, the prefill taken out
    return {
        "batch": batch,
        "generate_step_ms": gen * 1000,
        "bare_step_ms": bare * 1000,
        "head_ms": head_s * 1000,
        "head_share_of_bare_step": head_s / bare,
        "vocab_rows": head.weight.shape[0],
        "load": load_avg(),
    }


def bf16_kind(res: dict[str, Any]) -> str:
    """How the CPU of a result ran bf16 matmuls, for the docs line (older results did not record it)."""
    if "cpu_native_bf16" not in res:
        return "not recorded"
    return f"native ({res['cpu_native_bf16']})" if res["cpu_native_bf16"] else "emulated (no avx512_bf16 / amx_bf16)"
