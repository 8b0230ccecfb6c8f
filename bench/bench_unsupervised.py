"""Unsupervised-vector timings on the default model (Gemma 3 270M), CPU: ``python -m bench.bench_unsupervised``.

(a) MELBO, K = 16 vectors from the seed's prompt: all 16 in parallel on the layer slice (one
    batch, layers below the source computed once) against one vector at a time as the original
    code trains them (a forward pass from the embeddings to the target layer per step). The
    sliced trainer one vector at a time is timed too, to separate slicing from batching.
(b) The A/B grid: every (vector × scale) condition of a question in one pass with per-row
    vectors and scales (layers below the source once per question) against one condition per
    pass (the questions of that condition batched together, the usual loop over conditions).
(c) A/B scoring of a batch of questions: the two letter rows of the LM head at the answer
    position, the same plus the vocabulary normaliser at that position (letter mass), and a
    full-logits forward (every position × the whole vocabulary, as CAA's helper computes).
(d) optional: the reduced study (``unsupervised_ab_small.yaml``) end to end with ``steerlab run``.

Every measurement is interleaved with its baseline over ``--repeats`` rounds after a warm-up;
the machine is shared, so the load average is recorded beside each part. Writes
``bench/results/unsupervised.json`` and the "## Unsupervised vectors" section of docs/benchmarks.md.
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

from bench._docs import DOCS, interleaved, timed, write_json, write_section

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "unsupervised.json"
SMALL_CONFIG = ROOT / "src" / "steerlab" / "experiments" / "configs" / "unsupervised_ab_small.yaml"
HEADER = "## Unsupervised vectors"


def load() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def _med(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def _span(xs: list[float]) -> str:
    """Median seconds with the range over rounds (the machine is shared: rounds vary)."""
    return f"{_med(xs):.1f} s ({min(xs):.1f}–{max(xs):.1f})"


def _interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of each function per round, the order alternating between rounds (after one warm-up each)."""
    for fn in fns.values():
        fn()
    return interleaved([(name, lambda fn=fn: timed(fn)) for name, fn in fns.items()], repeats)


def melbo_times(lm, repeats: int, k: int = 16, steps: int = 10) -> dict:
    import torch

    from steerlab.interventions import Add
    from steerlab.vectors.melbo import MelboSettings, train_melbo
    from steerlab.vectors.unsupervised import SEED_PROMPT, SEED_SYSTEM, vector_seed

    s = MelboSettings(steps=steps)
    source, target = s.layers(lm.n_layers)
    batch = lm.tokenize([lm.format(SEED_PROMPT, SEED_SYSTEM)])
    with torch.no_grad():
        base = lm.forward_to_layer(batch, target)[:, -2:]

    def original() -> None:  # one vector at a time, a forward pass from the embeddings per step
        for i in range(k):
            x = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(vector_seed(0, "melbo", i)))
            theta = (x / x.norm()).requires_grad_(True)
            opt = torch.optim.Adam([theta], lr=s.lr)
            for _ in range(steps):
                opt.zero_grad()
                h = lm.forward_to_layer(batch, target, [Add(theta, layers=source, site=s.site)], grad=True)[:, -2:]
                loss = -((h - base).norm(dim=-1).pow(s.p).sum().pow(1 / s.q))
                (g,) = torch.autograd.grad(loss, theta)  # θ only, as the sliced trainer (no weight gradients)
                with torch.no_grad():
                    theta.grad = g - (g @ theta) * theta
                opt.step()
                with torch.no_grad():
                    theta.copy_(theta / theta.norm())

    fns = {
        "parallel": lambda: train_melbo(
            lm, [SEED_PROMPT], k, s.model_copy(update={"vector_batch_size": k}), system=SEED_SYSTEM
        ),
        "sliced_one_at_a_time": lambda: train_melbo(
            lm, [SEED_PROMPT], k, s.model_copy(update={"vector_batch_size": 1}), system=SEED_SYSTEM
        ),
        "original_one_at_a_time": original,
    }
    before = load()
    t = _interleaved(fns, repeats)
    return {
        "k": k,
        "steps": steps,
        "prompt_tokens": int(batch.input_ids.shape[1]),
        "source": source,
        "target": target,
        "seconds": t,
        "load_before": before,
        "load_after": load(),
        "ratio_original_over_parallel": _med(t["original_one_at_a_time"]) / _med(t["parallel"]),
        "ratio_sliced_one_over_parallel": _med(t["sliced_one_at_a_time"]) / _med(t["parallel"]),
    }


def _questions(n: int):
    from steerlab.evals.ab import load_ab_questions

    return load_ab_questions("shipped:survival-instinct", n=n, seed=0).questions


def grid_times(lm, repeats: int, n_questions: int = 4, n_vectors: int = 8) -> dict:
    import torch

    from steerlab.evals.ab import ab_prompt, letter_token_ids
    from steerlab.evals.ab_scoring import question_letters, score_ab, score_conditions
    from steerlab.interventions import Add

    qs = _questions(n_questions)
    scales = [-20.0, -10.0, -5.0, 5.0, 10.0, 20.0]
    g = torch.Generator().manual_seed(0)
    vecs = torch.nn.functional.normalize(torch.randn(n_vectors, lm.hidden_size, generator=g), dim=-1) * 16.0
    conds = [(v, s) for v in range(n_vectors) for s in scales]
    ids = letter_token_ids(lm, "AB", " (")
    system = "You are a helpful assistant."

    def batched() -> None:  # one pass per question: every condition a row
        v = torch.stack([vecs[i] for i, _ in conds] + [torch.zeros(lm.hidden_size)])
        st = torch.tensor([s for _, s in conds] + [0.0])
        for q in qs:
            b, o = question_letters(q)
            score_conditions(
                lm,
                ab_prompt(lm, q, system),
                (ids[b], ids[o]),
                [Add(v, strength=st, layers=4, site="mlp_out")],
                len(conds) + 1,
            )

    def per_condition() -> None:  # one pass per condition over the questions
        score_ab(lm, qs, system=system, batch_size=len(qs))
        for i, s in conds:
            score_ab(
                lm,
                qs,
                system=system,
                batch_size=len(qs),
                interventions=[Add(vecs[i], strength=s, layers=4, site="mlp_out")],
            )

    before = load()
    t = _interleaved({"batched": batched, "per_condition": per_condition}, repeats)
    return {
        "questions": n_questions,
        "conditions": len(conds) + 1,
        "rows": n_questions * (len(conds) + 1),
        "seconds": t,
        "load_before": before,
        "load_after": load(),
        "ratio_per_condition_over_batched": _med(t["per_condition"]) / _med(t["batched"]),
    }


def head_times(lm, repeats: int, n_questions: int = 16) -> dict:
    import torch

    from steerlab.evals.ab import ab_prompt, letter_token_ids
    from steerlab.evals.ab_scoring import letter_scores

    qs = _questions(n_questions)
    batch = lm.tokenize([ab_prompt(lm, q, "You are a helpful assistant.") for q in qs])
    ids = letter_token_ids(lm, "AB", " (")
    pair = torch.tensor([[ids["A"], ids["B"]]] * n_questions)

    def letters(mass: bool) -> None:
        h = lm.hidden_states(batch)[:, -1]
        letter_scores(lm, h, pair, mass=mass)

    def full() -> None:
        with torch.inference_mode():
            logits = lm.model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids
            ).logits  # [B, T, vocab]
            torch.softmax(logits[:, -1].float(), -1)[:, [ids["A"], ids["B"]]]

    before = load()
    t = _interleaved(
        {"letter_rows": lambda: letters(False), "letter_rows_and_mass": lambda: letters(True), "full_logits": full},
        repeats,
    )
    return {
        "questions": n_questions,
        "padded_tokens": int(batch.input_ids.numel()),
        "vocab": lm.tokenizer.vocab_size,
        "seconds": t,
        "load_before": before,
        "load_after": load(),
        "ratio_full_over_letters": _med(t["full_logits"]) / _med(t["letter_rows"]),
        "ratio_full_over_letters_and_mass": _med(t["full_logits"]) / _med(t["letter_rows_and_mass"]),
    }


def study_time(keep: Path | None = None) -> dict:
    """Wall and CPU time of ``steerlab run`` on the reduced study config, with the load average
    sampled every 30 s while it runs (run directory removed unless ``keep``)."""
    import resource
    import threading

    run_dir = keep or Path(tempfile.mkdtemp(prefix="steerlab-unsup-bench-"))
    steerlab = Path(sys.executable).with_name("steerlab")
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(30.0):
            samples.append(load())

    before, cpu0 = load(), resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    proc = subprocess.run(
        [str(steerlab), "run", str(SMALL_CONFIG), "--run-dir", str(run_dir / "run")],
        env={**os.environ, "STEERLAB_QUIET": "1", "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    done.set()
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    ok = proc.returncode == 0 and (run_dir / "run" / "report.md").exists()
    if keep is None:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {
        "seconds": seconds,
        "ok": ok,
        "cpu_seconds": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "load_before": before,
        "load_after": load(),
        "load_during": samples,
        "stderr_tail": proc.stderr[-500:] if not ok else "",
    }


def write_docs(res: dict) -> None:
    lines = [
        HEADER,
        "",
        f"Measured {res['date']} on {res['cores']} CPU cores (shared with other jobs: load averages "
        f"are given beside each part), torch {res['torch']}, Gemma 3 270M fp32.",
        "",
        "```",
        "python -m bench.bench_unsupervised",
        "```",
        "",
    ]
    rows = []
    if m := res.get("melbo"):
        t = m["seconds"]
        rows.append(
            [
                f"MELBO, K = {m['k']} vectors × {m['steps']} steps ({m['prompt_tokens']}-token prompt, layer "
                f"{m['source']} → {m['target']}): one at a time as the original ÷ all {m['k']} in parallel",
                f"**{m['ratio_original_over_parallel']:.1f}×**",
                "≥ 4×",
                f"{_span(t['original_one_at_a_time'])} vs {_span(t['parallel'])}",
                f"{m['load_before']:.1f}–{m['load_after']:.1f}",
            ]
        )
        rows.append(
            [
                f"MELBO: sliced trainer one vector at a time ÷ all {m['k']} in parallel (batching alone)",
                f"{m['ratio_sliced_one_over_parallel']:.1f}×",
                "(report)",
                f"{_span(t['sliced_one_at_a_time'])} vs {_span(t['parallel'])}",
                f"{m['load_before']:.1f}–{m['load_after']:.1f}",
            ]
        )
    if g := res.get("grid"):
        t = g["seconds"]
        rows.append(
            [
                f"A/B grid, {g['questions']} questions × {g['conditions']} conditions ({g['rows']} rows): one "
                "condition per pass ÷ all conditions of a question in one pass",
                f"**{g['ratio_per_condition_over_batched']:.1f}×**",
                "(report)",
                f"{_span(t['per_condition'])} vs {_span(t['batched'])}",
                f"{g['load_before']:.1f}–{g['load_after']:.1f}",
            ]
        )
    if h := res.get("head"):
        t = h["seconds"]
        rows.append(
            [
                f"A/B scoring, {h['questions']} questions ({h['padded_tokens']} padded tokens): full-logits "
                f"forward (all positions × {h['vocab']:,}) ÷ the two letter rows at the answer position",
                f"**{h['ratio_full_over_letters']:.2f}×**",
                "(report)",
                f"{_span(t['full_logits'])} vs {_span(t['letter_rows'])}",
                f"{h['load_before']:.1f}–{h['load_after']:.1f}",
            ]
        )
        rows.append(
            [
                "… full-logits forward ÷ letter rows + letter mass (vocabulary normaliser at the answer position)",
                f"{h['ratio_full_over_letters_and_mass']:.2f}×",
                "(report)",
                f"{_span(t['full_logits'])} vs {_span(t['letter_rows_and_mass'])}",
                f"{h['load_before']:.1f}–{h['load_after']:.1f}",
            ]
        )
    if rows:
        from steerlab.report.format import markdown_table

        lines += markdown_table(
            ["measurement", "ratio (median)", "target", "seconds: median (min–max over rounds)", "load"],
            rows,
            ["l", "r", "l", "l", "r"],
        ) + [""]
        lines += [
            f"Medians of {res.get('repeats', '?')} interleaved rounds after a warm-up; every round's seconds "
            "are in `bench/results/unsupervised.json`.",
            "",
        ]
    if s := res.get("study"):
        during = s.get("load_during") or []
        cpu = f"{s['cpu_seconds']:.0f} CPU-seconds, " if s.get("cpu_seconds") else ""
        lines += [
            f"The reduced study (`steerlab run src/steerlab/experiments/configs/unsupervised_ab_small.yaml`, "
            f"model cache built) took **{s['seconds'] / 60:.1f} min** wall "
            f"({cpu}{'finished, report written' if s['ok'] else 'FAILED'}; load {s['load_before']:.1f} before, "
            + (f"{min(during):.1f}–{max(during):.1f} during, " if during else "")
            + f"{s['load_after']:.1f} after; target ≤ 15 min on 2 cores).",
            "",
        ]
        if s.get("note"):
            lines += [s["note"], ""]
    write_section(DOCS, HEADER, "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--parts", default="melbo,grid,head,study", help="comma-separated: melbo, grid, head, study")
    ap.add_argument("--study-dir", type=Path, default=None, help="keep the study's run under this directory")
    args = ap.parse_args(argv)
    parts = set(args.parts.split(","))
    res = {
        "date": dt.date.today().isoformat(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "repeats": args.repeats,
    }
    if RESULTS.exists():
        prev = json.loads(RESULTS.read_text())
        res.update({k: prev[k] for k in ("melbo", "grid", "head", "study") if k in prev})
    if parts & {"melbo", "grid", "head"}:
        import steerlab as sl

        lm = sl.load_model("default", device="cpu")
        for name, fn in (("melbo", melbo_times), ("grid", grid_times), ("head", head_times)):
            if name in parts:
                res[name] = fn(lm, args.repeats)
                print(name, json.dumps({k: v for k, v in res[name].items() if k != "seconds"}), flush=True)
    if "study" in parts:
        res["study"] = study_time(args.study_dir)
        print("study", json.dumps(res["study"]), flush=True)
    write_json(RESULTS, res)
    write_docs(res)


if __name__ == "__main__":
    main()
