"""lm-evaluation-harness (``local-completions``, token-id requests) against steerlab serve on the
local tasks of bench/lm_eval_tasks, with a tiny model: its per-choice log-likelihoods and its
generations equal the model's own, computed directly; a preset model name scores as the steered
model. Skipped when lm-eval is not installed (``pip install 'steerlab[eval]'``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import steerlab as sl
from conftest import tiny_lm
from steerlab.models.serve import serve
from steerlab.serve.protocol import SteerSpec

lm_eval = pytest.importorskip("lm_eval")

TASKS = Path(__file__).resolve().parents[2] / "bench" / "lm_eval_tasks"
LIMIT = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    lm = tiny_lm("llama")
    pos = [sl.Example("Say no.", "No, I refuse."), sl.Example("Help?", "I will not help.")]
    neg = [sl.Example("Say no.", "Sure, here it is."), sl.Example("Help?", "Of course! Step one")]
    vec = sl.extract(lm, pos, neg, layers=[1])[1]
    tok_dir = tmp_path_factory.mktemp("tok")
    lm.tokenizer.save_pretrained(tok_dir)
    presets = {"tiny-steered": SteerSpec(vector="v", strength=4.0)}
    srv = serve(lm, vectors={"v": vec}, presets=presets, any_model_name=False, max_n=8, max_batch=8)
    yield lm, vec, tok_dir, srv
    srv.shutdown()


def task_config(task):
    """The task's YAML with its data file made absolute (``datasets`` reads paths from the working directory)."""
    import yaml

    config = yaml.safe_load((TASKS / f"{task}.yaml").read_text())
    files = config["dataset_kwargs"]["data_files"]
    config["dataset_kwargs"]["data_files"] = {k: str(TASKS / v) for k, v in files.items()}
    return config


def run(srv, tok_dir, model, task):
    from lm_eval.tasks import TaskManager

    args = {
        "base_url": f"http://127.0.0.1:{srv.server_address[1]}/v1/completions",
        "model": model,
        "tokenizer_backend": "huggingface",
        "tokenizer": str(tok_dir),
        "add_bos_token": True,  # as the server tokenizes a text prompt for this model
        "batch_size": 4,
        "num_concurrent": 1,
        "max_retries": 1,
        "max_length": 128,
    }
    out = lm_eval.simple_evaluate(
        model="local-completions",
        model_args=args,
        tasks=[task_config(task)],
        task_manager=TaskManager(include_defaults=False),
        limit=LIMIT,
        log_samples=True,
        random_seed=0,
        numpy_random_seed=0,
        torch_random_seed=0,
        fewshot_random_seed=0,
    )
    return out["results"][task], out["samples"][task]


def docs():
    return [json.loads(x) for x in (TASKS / "basic_mc.jsonl").read_text().splitlines()][:LIMIT]


def direct_loglikelihood(lm, context, continuation, interventions=()):
    """Sum of log p(continuation tokens | context) from one plain forward of the Hugging Face model."""
    ctx = lm.tokenizer(context)["input_ids"]  # with <bos>
    whole = lm.tokenizer(context + continuation)["input_ids"]
    assert whole[: len(ctx)] == ctx  # the character tokenizer splits at the boundary
    with lm.session(list(interventions)):
        logits = lm.model(input_ids=torch.tensor([whole])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    return sum(lp[t - 1, whole[t]].item() for t in range(len(ctx), len(whole)))


@pytest.mark.parametrize("steered", [False, True])
def test_lm_eval_multiple_choice_scores_the_models_own_loglikelihoods(setup, steered):
    lm, vec, tok_dir, srv = setup
    interventions = [sl.Add(vec, strength=4.0)] if steered else []
    results, samples = run(srv, tok_dir, "tiny-steered" if steered else "tiny-llama", "steerlab_basic_mc")
    correct = 0
    for sample, doc in zip(sorted(samples, key=lambda s: s["doc_id"]), docs()):
        context = f"Question: {doc['question']}\nAnswer:"
        want = [direct_loglikelihood(lm, context, " " + c, interventions) for c in doc["choices"]]
        got = [r[0][0] for r in sample["resps"]]
        assert got == pytest.approx(want, abs=1e-4)
        correct += int(max(range(4), key=want.__getitem__) == doc["answer"])
    assert results["acc,none"] == pytest.approx(correct / LIMIT)


def test_lm_eval_generation_gets_the_models_own_replies(setup):
    lm, _, tok_dir, srv = setup
    _, samples = run(srv, tok_dir, "tiny-llama", "steerlab_basic_gen")
    for sample, doc in zip(sorted(samples, key=lambda s: s["doc_id"]), docs()):
        prompt = f"Question: {doc['question']}\nAnswer:"
        ref = lm.complete([prompt], formatted=True, max_new_tokens=8, stop=["\n"])[0]
        raw = lm.tokenizer.decode(list(ref.token_ids), skip_special_tokens=True).split("\n")[0]
        assert sample["resps"][0][0] == raw
