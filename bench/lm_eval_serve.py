"""lm-evaluation-harness against ``steerlab serve``: the capability cost of the refusal vector.

``python -m bench.lm_eval_serve [--strengths 0,0.05,0.1,0.15,0.2,0.3] [--limit N]`` (needs
``pip install 'steerlab[eval]'``; no network: the tasks read bench/lm_eval_tasks only).

1. Loads the default model (Gemma 3 270M base) and makes the refusal vector exactly as
   docs/serve.md does (CAA from the first 16 shipped ``refusal_pairs``, layer 6,
   ``activation_norm``, so strength 0.1 adds a tenth of a typical residual norm).
2. Serves it in-process on 127.0.0.1 with one steering preset per strength
   (``refusal@S`` → model name ``refusal-S``), since lm-eval cannot send ``extra_body``.
3. Runs lm-eval's ``local-completions`` model (token-id requests, ``echo`` + ``logprobs`` for
   log-likelihoods, the model's own tokenizer saved to a temporary folder) on the two local
   tasks, once per model name: ``steerlab_basic_mc`` (60 four-choice questions, ``acc`` /
   ``acc_norm``) and ``steerlab_basic_gen`` (the same questions answered greedily,
   ``exact_match``).

Writes ``bench/results/lm_eval_serve.json`` and the "## Capability cost of steering" section of
docs/serve.md. Accuracy is deterministic (greedy, no sampling); the seconds are wall time on a
shared machine (the load average is recorded).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "bench" / "lm_eval_tasks"
RESULTS = ROOT / "bench" / "results" / "lm_eval_serve.json"
DOC = ROOT / "docs" / "serve.md"
HEADING = "## Capability cost of steering, measured with lm-eval"
TASK_NAMES = ("steerlab_basic_mc", "steerlab_basic_gen")


def task_config(task: str) -> dict[str, Any]:
    """The task's YAML with its data file made absolute (``datasets`` resolves relative paths
    against the working directory, not the YAML's folder)."""
    import yaml

    config: dict[str, Any] = yaml.safe_load((TASKS / f"{task}.yaml").read_text())
    files = config["dataset_kwargs"]["data_files"]
    config["dataset_kwargs"]["data_files"] = {k: str(TASKS / v) for k, v in files.items()}
    return config


def refusal_vector(lm: Any) -> Any:
    """The refusal vector of docs/serve.md."""
    import steerlab as sl
    from steerlab.data import load_shipped

    pairs = load_shipped("refusal_pairs")[:16]
    vecs = sl.extract(
        lm,
        [sl.Example(p.prompt, p.positive) for p in pairs],
        [sl.Example(p.prompt, p.negative) for p in pairs],
        layers=[6],
        normalization="activation_norm",
    )
    return vecs[6]


def evaluate(url: str, model: str, tok_dir: str, limit: int | None) -> dict[str, Any]:
    """lm-eval's ``local-completions`` on both tasks against ``url``, as model name ``model``."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    args = {
        "base_url": f"{url}/completions",
        "model": model,
        "tokenizer_backend": "huggingface",
        "tokenizer": tok_dir,
        "add_bos_token": True,  # the server adds <bos> to a text prompt for this model; match it
        "batch_size": 16,
        "num_concurrent": 1,
        "max_retries": 1,
        "max_length": 2048,
    }
    start = time.perf_counter()
    out = lm_eval.simple_evaluate(
        model="local-completions",
        model_args=args,
        tasks=[task_config(t) for t in TASK_NAMES],
        task_manager=TaskManager(include_defaults=False),
        limit=limit,
        random_seed=0,
        numpy_random_seed=0,
        torch_random_seed=0,
        fewshot_random_seed=0,
    )
    seconds = time.perf_counter() - start
    mc, gen = (out["results"][t] for t in TASK_NAMES)
    return {
        "model": model,
        "acc": mc["acc,none"],
        "acc_stderr": mc["acc_stderr,none"],
        "acc_norm": mc["acc_norm,none"],
        "exact_match": gen["exact_match,strip"],
        "exact_match_stderr": gen["exact_match_stderr,strip"],
        "n": out["n-samples"][TASK_NAMES[0]]["effective"],
        "seconds": round(seconds, 1),
    }


def run(strengths: list[float], limit: int | None, dtype: str) -> dict[str, Any]:
    import steerlab as sl
    from steerlab.models.serve import serve
    from steerlab.serve.protocol import SteerSpec

    lm = sl.load_model("default", device="cpu", dtype=dtype)
    vec = refusal_vector(lm)
    names = {s: (lm.model_id if s == 0 else f"refusal-{s:g}") for s in strengths}
    presets = {n: SteerSpec(vector="refusal", strength=s) for s, n in names.items() if s != 0}
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows = []
    with tempfile.TemporaryDirectory() as tok_dir:
        lm.tokenizer.save_pretrained(tok_dir)
        srv = serve(
            lm,
            vectors={"refusal": vec},
            presets=presets,
            any_model_name=False,  # a misspelt preset must not run unsteered
            check_context=True,
            max_n=16,
            max_batch=16,
            request_timeout_s=None,
        )
        try:
            url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
            for s in strengths:
                row = {"strength": s, **evaluate(url, names[s], tok_dir, limit)}
                print(json.dumps(row), flush=True)
                rows.append(row)
            stats = srv.app.state.steerlab.batcher.stats.to_json()
        finally:
            srv.shutdown()
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": lm.model_id,
        "dtype": dtype,
        "vector": {"layer": vec.layer, "site": vec.site, "pairs": 16, "normalization": "activation_norm"},
        "rows": rows,
        "batcher": stats,
        "loadavg_before": load_before,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def write_docs(res: dict[str, Any]) -> None:
    from bench._docs import write_section

    n = res["rows"][0]["n"]
    lines = [
        HEADING,
        "",
        "lm-evaluation-harness 0.4.13 (`local-completions`: token-id prompts, `echo` + `logprobs`",
        "for log-likelihoods) against `steerlab serve`, with one steering preset per strength",
        f"(`--preset refusal-S=refusal@S`), on the default model ({res['model']}, "
        f"{res.get('dtype', 'float32')}) and the refusal",
        f"vector of 'Start it' above (layer {res['vector']['layer']}, activation-norm scaled). Tasks:",
        f"`bench/lm_eval_tasks`, {n} easy four-choice questions written for steerlab, scored as",
        "multiple choice (`acc`, `acc_norm`; chance is 0.25) and answered greedily (`exact_match`",
        "of the reply up to a newline, at most 8 tokens).",
        "",
        "| model name | strength | acc | acc_norm | exact_match | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        name = "the model's own (unsteered)" if r["strength"] == 0 else f"`{r['model']}`"
        lines.append(
            f"| {name} | {r['strength']:g} | {r['acc']:.3f} ± {r['acc_stderr']:.3f} | {r['acc_norm']:.3f} | "
            f"{r['exact_match']:.3f} ± {r['exact_match_stderr']:.3f} | {r['seconds']} |"
        )
    lines += [
        "",
        f"Measured {res['date']} with `python -m bench.lm_eval_serve` (load average",
        f"{res['loadavg_before']} before, {res['loadavg_after']} after; 2 shared CPU cores); ± is",
        "lm-eval's standard error of each accuracy (every row answers the same questions, so the",
        "differences between rows are less uncertain than that). Seconds are wall time for both",
        "tasks. Results: `bench/results/lm_eval_serve.json`.",
        "",
    ]
    write_section(DOC, HEADING, "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--strengths", default="0,0.05,0.1,0.15,0.2,0.3", help="comma-separated strengths (0 = unsteered)")
    ap.add_argument("--limit", type=int, default=None, help="questions per task (default: all)")
    ap.add_argument("--dtype", default="float32", help="the model's dtype (the table in docs/serve.md: float32)")
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite docs/serve.md")
    ap.add_argument("--docs-only", action="store_true", help="rewrite the docs section from the saved results")
    a = ap.parse_args(argv)
    if a.docs_only:
        write_docs(json.loads(RESULTS.read_text()))
        return
    res = run([float(x) for x in a.strengths.split(",")], a.limit, a.dtype)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    if not a.no_docs:
        write_docs(res)


if __name__ == "__main__":
    main()
