"""bf16 parity and generation throughput on a device of your choice (meant for a CUDA GPU):

``python -m bench.gpu_check --device cuda [--model default] [--dtype bfloat16] [--batches 8,32]``

Loads the model twice on ``--device`` (float32 and ``--dtype``), prints one JSON object: the parity
measurements of :func:`bench._bf16.parity` (top-1 agreement, KL, vector cosine, verdict agreement,
A/B logit differences), tokens/s of plain Hugging Face ``generate`` in float32 against steerlab in
``--dtype`` (:func:`bench._bf16.throughput`), and the device's ``torch.mm`` peaks and copy bandwidth.
Not part of ``make bench`` (this machine has no GPU); ``tests`` runs it on CPU with a tiny model.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def run(
    model: str,
    device: str,
    *,
    dtype: str = "bfloat16",
    batches: tuple[int, ...] = (8, 32),
    new_tokens: int = 32,
    rounds: int = 2,
    n_prompts: int = 16,
    n_pairs: int = 24,
    n_ab: int = 8,
    peak_size: int = 2048,
    copy_mb: int = 512,
) -> dict[str, Any]:
    """Parity and throughput of ``model`` in ``dtype`` against float32 on ``device``."""
    import steerlab as sl
    from bench._bf16 import load_avg, machine_fraction, machine_peaks, parity, shipped_prompts, throughput

    ref = sl.load_model(model, device=device, dtype="float32")
    low = sl.load_model(model, device=device, dtype=dtype)
    n = ref.n_layers
    harmful, benign = shipped_prompts(n_prompts, n_prompts)
    peaks = machine_peaks(device, n=peak_size, copy_mb=copy_mb)
    out: dict[str, Any] = {
        "model_id": ref.model_id,
        "device": device,
        "dtype": dtype,
        "load_start": load_avg(),
        "peaks": peaks,
        "parity": parity(
            ref,
            low,
            harmful=harmful,
            benign=benign,
            layers=sorted({n // 4, n // 2, (3 * n) // 4}),
            n_pairs=n_pairs,
            n_ab=n_ab,
            new_tokens=new_tokens,
        ),
        "throughput": [],
    }
    for b in batches:
        r = throughput(ref, low, [*harmful, *benign], batch=b, new_tokens=new_tokens, rounds=rounds)
        r["fraction_low"] = machine_fraction(low, r["tokens_per_s"]["steerlab_low"], b, peaks)
        out["throughput"].append(r)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="default", help="a load_model spec (default, instruct, a hub id, a folder)")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    ap.add_argument("--batches", default="8,32")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args(argv)
    res = run(
        a.model,
        a.device,
        dtype=a.dtype,
        batches=tuple(int(x) for x in a.batches.split(",")),
        new_tokens=a.new_tokens,
        rounds=a.rounds,
    )
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
