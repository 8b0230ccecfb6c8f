"""What bf16 changes, on every shipped model: ``python -m bench.bench_bf16_parity [--models default,instruct]``.

Per model, a float32 and a bfloat16 copy loaded side by side (see :mod:`bench._bf16`):
next-token top-1 agreement and KL on 32 shipped prompts (16 harmful, 16 benign), cosine of
mean-difference vectors from 24 shipped refusal pairs at three layers, refusal-marker verdicts of
32-token greedy replies to the same 32 prompts, and A/B logit differences on 8 shipped
corrigible-neutral-HHH questions. Targets: top-1 >= 98%, mean KL <= 0.01 nats, cosine >= 0.999.
Writes bench/results/bf16_parity.json and the "## bf16 parity" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import json
from pathlib import Path
from typing import Any

from bench._bf16 import bf16_kind, parity, run_header, shipped_prompts
from bench._docs import DOCS, write_json, write_section

RESULTS = Path(__file__).parent / "results" / "bf16_parity.json"
COMMAND = "python -m bench.bench_bf16_parity"
TARGETS = {"top1_agreement": 0.98, "kl_mean": 0.01, "cosine_min": 0.999}


def run_model(spec: str, device: str = "cpu") -> dict[str, Any]:
    import steerlab as sl

    ref = sl.load_model(spec, device=device, dtype="float32")
    low = sl.load_model(spec, device=device, dtype="bfloat16")
    n = ref.n_layers
    harmful, benign = shipped_prompts()
    every_harmful, every_benign = shipped_prompts(n_harmful=10_000, n_benign=10_000)
    res = parity(
        ref,
        low,
        harmful=harmful,
        benign=benign,
        layers=[n // 4, n // 2, (3 * n) // 4],
        logit_prompts=[*every_harmful, *every_benign],  # every shipped request: one forward each
    )
    res["model_id"] = ref.model_id
    del ref, low
    gc.collect()
    return res


def verdicts(m: dict[str, Any]) -> dict[str, bool]:
    """Which targets a model's parity meets."""
    return {
        "top1_agreement": m["logits"]["top1_agreement"] >= TARGETS["top1_agreement"],
        "kl_mean": m["logits"]["kl_mean"] <= TARGETS["kl_mean"],
        "cosine_min": m["vectors"]["cosine_min"] >= TARGETS["cosine_min"],
    }


def _top1(lg: dict[str, Any]) -> str:
    """Agreement with its count and Wilson interval, and fp32's own margin where bf16 picks another token."""
    if "n_top1_agree" not in lg:  # results written before the count was kept
        return f"{lg['top1_agreement']:.1%}"
    from steerlab.stats.bootstrap import wilson_interval

    est = wilson_interval(lg["n_top1_agree"], lg["n_prompts"])
    text = (
        f"{lg['top1_agreement']:.1%} ({lg['n_top1_agree']}/{lg['n_prompts']}; 95% CI [{est.low:.1%}, {est.high:.1%}])"
    )
    margins = lg.get("fp32_margin_where_they_differ") or []
    if margins:
        text += f"; where they differ, fp32's top-2 was {', '.join(f'{m:.3f}' for m in margins)} nats behind its top-1"
    return text


def markdown(res: dict[str, Any]) -> str:
    lines = [
        "## bf16 parity",
        "",
        f"`{COMMAND}` ({res['date']}, torch {res['torch']}, {res['threads']} threads; CPU bf16 matmul: {bf16_kind(res)}). Each model loaded in",
        "float32 and in bfloat16 side by side; bf16 compared with fp32. Targets: top-1 ≥ 98%, mean KL ≤ 0.01",
        "nats, vector cosine ≥ 0.999. The bf16 logits are steerlab's: the full head in bf16 with each",
        "position's top 16 rows recomputed in float32 (`steerlab.models.head_precision`; greedy replies go",
        "through the same head). Load average (1/5/15 min) after each part in the last column.",
        "",
        "| model | measurement | bf16 vs fp32 | meets target | load |",
        "|---|---|---|---|---|",
    ]
    for spec, m in res["models"].items():
        ok = verdicts(m)
        lg, vc, vd, ab = m["logits"], m["vectors"], m["verdicts"], m["ab"]
        cos = ", ".join(f"L{k} {v:.5f}" for k, v in vc["cosine"].items())
        rows = [
            (
                f"next-token top-1 agreement ({lg['n_prompts']} prompts)",
                _top1(lg),
                ok["top1_agreement"],
                lg,
            ),
            (
                "KL(fp32 ‖ bf16), mean / max, nats",
                f"{lg['kl_mean']:.4f} / {lg['kl_max']:.4f}",
                ok["kl_mean"],
                lg,
            ),
            ("largest |Δ log p| of the fp32 top-1 token", f"{lg['top1_logprob_absdiff_max']:.3f}", None, lg),
            (f"vector cosine ({vc['n_pairs']} refusal pairs)", cos, ok["cosine_min"], vc),
            (
                f"refusal-marker verdict agreement ({vd['n_prompts']} greedy replies, {vd['new_tokens']} tokens)",
                f"{vd['verdict_agreement']:.1%} (identical texts {vd['identical_texts']:.1%};"
                f" refusals {vd['refusals_ref']} fp32, {vd['refusals_low']} bf16)",
                None,
                vd,
            ),
            (
                f"A/B logit difference ({ab['n_questions']} questions), mean / max abs change",
                f"{ab['logit_diff_absdiff_mean']:.3f} / {ab['logit_diff_absdiff_max']:.3f}"
                f" (mean |diff| {ab['logit_diff_abs_mean_ref']:.2f}; sign agreement {ab['sign_agreement']:.0%})",
                None,
                ab,
            ),
        ]
        for name, value, good, part in rows:
            mark = "–" if good is None else ("yes" if good else "**no**")
            lines.append(f"| {spec} (`{m['model_id']}`) | {name} | {value} | {mark} | {part['load']} |")
    failed = [f"{spec}: {k}" for spec, m in res["models"].items() for k, v in verdicts(m).items() if not v]
    lines += [
        "",
        "All targets met: bf16 stays the CPU default (`dtype: auto`)."
        if not failed
        else f"Targets missed ({'; '.join(failed)}): pass `dtype: float32` (`--dtype float32`) where that part matters.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog=COMMAND, description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--models", default="default,instruct")
    ap.add_argument("--render-only", action="store_true", help="rewrite the docs section from the results file")
    a = ap.parse_args(argv)
    if a.render_only:
        res = json.loads(RESULTS.read_text())
    else:
        res = {
            **run_header(),
            "models": {spec: run_model(spec) for spec in a.models.split(",")},
        }
        write_json(RESULTS, res)
    write_section(DOCS, "## bf16 parity", markdown(res))
    print(markdown(res))
    return res


if __name__ == "__main__":
    main()
