"""Refusal-direction timings on the default model (Gemma 3 270M), CPU: ``python -m bench.bench_refusal_direction``.

(a) scoring candidates: the last-position candidates of layers 2-13 (12) × 8 harmful prompts, each row's refusal log-odds
    under directional ablation of its own candidate. Batched: 32 rows a pass, a different
    candidate per row (``Ablate([B, d])``), as the study does. Per candidate: one pass per
    candidate over its 8 prompts (``Ablate([d])``), as the reference implementation does. Same
    rows, same numbers (checked); the ratio is the time of the first over the second.
(b) generation with the direction removed: 8 prompts × 32 new tokens from the orthogonalised
    copy (no hooks) against the same model with hook ablation (``Ablate``: every layer's input
    and both writes, 54 hooks) and with the exactly equivalent hooks (``weight_equivalent_ablation``).
(c) the whole study: ``steerlab run src/steerlab/experiments/configs/refusal_direction.yaml`` in a
    fresh run directory (model cache built), wall time and the per-stage times it records.
(d) not a timing: next-token KL when a random direction is removed, by where (why every candidate
    fails the KL filter on this model).

Rounds are interleaved; timing noise on this shared machine only adds time, so the headline is
the ratio of the fastest runs; ``uptime`` before and after is recorded. Writes
``bench/results/refusal_direction.json`` and the "## Refusal direction" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._docs import write_json, write_section

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "refusal_direction.json"
DOCS = ROOT / "docs" / "benchmarks.md"
CONFIG = ROOT / "src" / "steerlab" / "experiments" / "configs" / "refusal_direction.yaml"
N_CANDIDATES, N_PROMPTS, BATCH = 16, 8, 32
GEN_PROMPTS, GEN_TOKENS = 8, 32


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _candidates(lm):  # noqa: ANN001, ANN202
    from steerlab.data import load_shipped
    from steerlab.vectors.candidates import candidate_directions

    harmful = [p.text for p in load_shipped("harmful_requests")]
    harmless = [p.text for p in load_shipped("benign_requests")]
    cands = candidate_directions(lm, harmful[:16], harmless[:16], layers=range(2, 14), batch_size=16)
    picked = [v for v in cands.values() if v.meta.extra["position"] == -1][:N_CANDIDATES]
    return picked, harmful[40 : 40 + N_PROMPTS]


def scoring_times(lm, repeats: int) -> dict:  # noqa: ANN001
    import torch

    from steerlab.evals.refusal_score import last_position_logits, refusal_log_odds
    from steerlab.interventions import Ablate

    cands, prompts = _candidates(lm)
    tokens = [564, 35123, 1773]  # " I", " Sorry", " As" on this tokenizer
    rows = [(v, p) for v in cands for p in prompts]  # candidate-major, as the study's cells

    def batched() -> torch.Tensor:
        out = []
        for s in range(0, len(rows), BATCH):
            chunk = rows[s : s + BATCH]
            batch = lm.tokenize([lm.format(p) for _, p in chunk])
            per_row = torch.stack([v.vector for v, _ in chunk])  # [B, d]: each row its own candidate
            out.append(refusal_log_odds(last_position_logits(lm, batch, [Ablate(per_row)]), tokens))
        return torch.cat(out)

    def per_candidate() -> torch.Tensor:
        batch = lm.tokenize([lm.format(p) for p in prompts])
        return torch.cat([refusal_log_odds(last_position_logits(lm, batch, [Ablate(v)]), tokens) for v in cands])

    a, b = batched(), per_candidate()  # warm-up, and the same numbers both ways
    max_diff = float((a - b).abs().max())
    t_b, t_p = [], []
    for r in range(repeats):
        for fn, bucket in (
            ((batched, t_b), (per_candidate, t_p)) if r % 2 == 0 else ((per_candidate, t_p), (batched, t_b))
        ):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return {
        "rows": len(rows),
        "candidates": len(cands),
        "prompts": len(prompts),
        "batch": BATCH,
        "batched_seconds": t_b,
        "per_candidate_seconds": t_p,
        "max_abs_score_diff": max_diff,
        "ratio_batched_over_per_candidate": min(t_b) / min(t_p),
    }


def generation_times(lm, repeats: int) -> dict:  # noqa: ANN001
    import torch

    from steerlab.data import load_shipped
    from steerlab.interventions import Ablate
    from steerlab.interventions.orthogonalize import orthogonalized_copy, weight_equivalent_ablation

    cands, _ = _candidates(lm)
    direction = cands[len(cands) // 2]
    prompts = [p.text for p in load_shipped("benign_requests")][:GEN_PROMPTS]
    olm, _ = orthogonalized_copy(lm, direction)
    kw = dict(max_new_tokens=GEN_TOKENS, batch_size=GEN_PROMPTS)

    def gen_orth() -> None:
        olm.complete(prompts, **kw)

    def gen_hooks() -> None:
        lm.complete(prompts, interventions=[Ablate(direction)], **kw)

    def gen_equivalent() -> None:
        with weight_equivalent_ablation(lm.model, direction):
            lm.complete(prompts, **kw)

    def gen_plain() -> None:
        lm.complete(prompts, **kw)

    fns = {
        "orthogonalized": gen_orth,
        "hooks_ablate": gen_hooks,
        "hooks_equivalent": gen_equivalent,
        "plain": gen_plain,
    }
    torch.manual_seed(0)
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats):
        order = list(fns) if r % 2 == 0 else list(reversed(fns))
        for k in order:
            start = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    return {
        "prompts": GEN_PROMPTS,
        "new_tokens": GEN_TOKENS,
        "seconds": times,
        "ratio_orthogonalized_over_hooks": best["orthogonalized"] / best["hooks_ablate"],
        "ratio_orthogonalized_over_equivalent_hooks": best["orthogonalized"] / best["hooks_equivalent"],
        "ratio_hooks_over_plain": best["hooks_ablate"] / best["plain"],
    }


def ablation_costs(lm, n_directions: int = 2) -> dict:  # noqa: ANN001
    """Next-token KL on harmless prompts when a *random* direction is removed, by where it is removed.

    Not a timing: it shows why every candidate fails the KL filter on this model (the random
    controls in a study report fail it too). Variants: ``Ablate`` at every layer's input and both
    writes (the study's ablation), at the inputs only, at the writes only, everywhere but the
    first (BOS) position, and the hooks the orthogonalised weights are equivalent to.
    """
    import torch

    from steerlab.data import load_shipped
    from steerlab.evals.refusal_score import last_position_logits, next_token_kl
    from steerlab.interventions import Ablate, Span
    from steerlab.interventions.orthogonalize import weight_equivalent_ablation

    prompts = [p.text for p in load_shipped("benign_requests")][40 : 40 + N_PROMPTS]
    batch = lm.tokenize([lm.format(p) for p in prompts])
    base = last_position_logits(lm, batch)

    def kl(ivs=()) -> float:  # noqa: ANN001
        return float(next_token_kl(base, last_position_logits(lm, batch, list(ivs))).mean())

    out: dict[str, list[float]] = {
        k: [] for k in ("ablate_all", "resid_pre_only", "writes_only", "all_but_bos", "weight_equivalent")
    }
    g = torch.Generator().manual_seed(0)
    for _ in range(n_directions):
        r = torch.randn(lm.hidden_size, generator=g)
        out["ablate_all"].append(kl([Ablate(r)]))
        out["resid_pre_only"].append(kl([Ablate(r, sites=("resid_pre",))]))
        out["writes_only"].append(kl([Ablate(r, sites=("attn_out", "mlp_out"))]))
        out["all_but_bos"].append(kl([Ablate(r, positions=Span(1, None))]))
        with weight_equivalent_ablation(lm.model, r):
            out["weight_equivalent"].append(kl())
    return {"prompts": len(prompts), "directions": n_directions, "kl": out}


def pipeline_time() -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix="steerlab-refdir-bench-")) / "run"
    steerlab = Path(sys.executable).with_name("steerlab")
    before = uptime()
    start = time.perf_counter()
    proc = subprocess.run(
        [str(steerlab), "run", str(CONFIG), "--run-dir", str(run_dir)],
        env={**os.environ, "STEERLAB_QUIET": "1"},
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    ok = proc.returncode == 0 and (run_dir / "report.md").exists()
    stages = {}
    for f in run_dir.glob("timings_*.json"):
        stages = {s["stage"]: s["seconds"] for s in json.loads(f.read_text())}
    shutil.rmtree(run_dir.parent, ignore_errors=True)
    return {
        "seconds": seconds,
        "ok": ok,
        "stages": stages,
        "uptime_before": before,
        "uptime_after": uptime(),
        "stderr_tail": proc.stderr[-800:] if not ok else "",
    }


def write_docs(res: dict) -> None:
    lines = [
        "## Refusal direction",
        "",
        f"Default model (Gemma 3 270M, fp32), CPU, {res['cores']} cores, torch {res['torch']}, {res['date']}; "
        "rounds interleaved after a warm-up; headline ratios are of the fastest runs (noise on this shared "
        f"machine only adds time). Load: `{res.get('uptime_before', '?')}` before, `{res.get('uptime_after', '?')}` after.",
        "",
        "```",
        "python -m bench.bench_refusal_direction" + ("" if res.get("pipeline") else " --skip-pipeline"),
        "```",
        "",
    ]
    s, g, p = res.get("scoring"), res.get("generation"), res.get("pipeline")
    if s:
        lines += [
            f"**Scoring candidates batched vs one candidate per pass**: {s['rows']} rows ({s['candidates']} "
            f"candidates × {s['prompts']} prompts, ablation refusal score). Batched, {s['batch']} rows a pass "
            f"with a candidate per row: {min(s['batched_seconds']):.1f} s; one pass per candidate: "
            f"{min(s['per_candidate_seconds']):.1f} s; **ratio {s['ratio_batched_over_per_candidate']:.2f}** "
            f"(min of {len(s['batched_seconds'])}); largest score difference between the two "
            f"{s['max_abs_score_diff']:.1e}.",
            "",
        ]
    if g:
        best = {k: min(v) for k, v in g["seconds"].items()}
        lines += [
            f"**Generation with the direction removed** ({g['prompts']} prompts × {g['new_tokens']} new "
            f"tokens): orthogonalised weights {best['orthogonalized']:.1f} s, hook ablation (`Ablate`, 54 hooks) "
            f"{best['hooks_ablate']:.1f} s, the exactly equivalent hooks {best['hooks_equivalent']:.1f} s, "
            f"unsteered {best['plain']:.1f} s; **orthogonalised ÷ hooks {g['ratio_orthogonalized_over_hooks']:.2f}**, "
            f"÷ equivalent hooks {g['ratio_orthogonalized_over_equivalent_hooks']:.2f}; hooks ÷ unsteered "
            f"{g['ratio_hooks_over_plain']:.2f}.",
            "",
        ]
    a = res.get("ablation_costs")
    if a:
        names = {
            "ablate_all": "`Ablate` (every layer input and both writes, as the study)",
            "resid_pre_only": "layer inputs only",
            "writes_only": "attention / MLP writes only",
            "all_but_bos": "everywhere but the first (BOS) position",
            "weight_equivalent": "the hooks the orthogonalised weights equal",
        }
        lines += [
            f"**What removing a random direction costs** (not a timing; mean next-token KL on {a['prompts']} "
            f"harmless prompts, {a['directions']} isotropic random directions): "
            + "; ".join(f"{names[k]}: " + " / ".join(f"{x:.2f}" for x in v) for k, v in a["kl"].items())
            + " nats. Under `Ablate`, no random direction comes near the study's KL filter (0.1), and no "
            "candidate did in the two study runs in docs/refusal_direction.md.",
            "",
        ]
    if p:
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in p["stages"].items())
        lines += [
            f"**The whole study** (`steerlab run src/steerlab/experiments/configs/refusal_direction.yaml`, "
            f"shipped data, model cache built): **{p['seconds'] / 60:.1f} min** "
            f"({'finished, report written' if p['ok'] else 'FAILED'}; target ≤ 15 min on 2 cores). "
            f"Stages: {stages}. Load: `{p['uptime_before']}` before, `{p['uptime_after']}` after.",
            "",
        ]
    if not p:
        lines += [
            "The whole study was not timed in this run (`--only-pipeline` does it); the wall times of two "
            'runs measured with `/usr/bin/time` are in docs/refusal_direction.md ("On the default model").',
            "",
        ]
    lines += ["Raw times: `bench/results/refusal_direction.json`.", ""]
    write_section(DOCS, "## Refusal direction", "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    import torch

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-pipeline", action="store_true", help="keep the previous pipeline measurement")
    ap.add_argument("--only-pipeline", action="store_true", help="measure the whole study only")
    args = ap.parse_args(argv)
    res = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "uptime_before": uptime(),
    }
    if RESULTS.exists():
        prev = json.loads(RESULTS.read_text())
        res.update({k: prev[k] for k in ("scoring", "generation", "ablation_costs", "pipeline") if k in prev})
    if not args.only_pipeline:
        import steerlab as sl

        torch.set_num_threads(min(2, os.cpu_count() or 1))
        lm = sl.load_model("default", device="cpu")
        res["scoring"] = scoring_times(lm, args.repeats)
        res["generation"] = generation_times(lm, args.repeats)
        res["ablation_costs"] = ablation_costs(lm)
        del lm
    if not args.skip_pipeline:
        res["pipeline"] = pipeline_time()
    res["uptime_after"] = uptime()
    write_json(RESULTS, res)
    write_docs(res)
    print(json.dumps({k: v for k, v in res.items() if k not in ("scoring", "generation", "ablation_costs")}, indent=2))


if __name__ == "__main__":
    main()
