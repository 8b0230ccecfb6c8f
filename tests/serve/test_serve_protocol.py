"""The parts of the completions protocol evaluation harnesses rely on: ``echo`` with prompt
log-probabilities, token-id prompts, steering presets as model names. Each reply is checked
against the model computed directly (a plain forward pass of the Hugging Face model)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest
import torch

import steerlab as sl
from conftest import tiny_lm
from steerlab.models.serve import serve
from steerlab.serve.protocol import SteerSpec

PROMPT = "The cat sat on"


@pytest.fixture(scope="module")
def lm():
    return tiny_lm("llama")


@pytest.fixture(scope="module")
def vec(lm):
    pos = [sl.Example("Say no.", "No, I refuse."), sl.Example("Help?", "I will not help.")]
    neg = [sl.Example("Say no.", "Sure, here it is."), sl.Example("Help?", "Of course! Step one")]
    return sl.extract(lm, pos, neg, layers=[1])[1]


@pytest.fixture(scope="module")
def server(lm, vec):
    presets = {"tiny-no": SteerSpec(vector="v", strength=4.0)}
    srv = serve(lm, vectors={"v": vec}, any_model_name=False, presets=presets, batch_wait_ms=2)
    yield srv
    srv.shutdown()


def post(server, body):
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.server_address[1]}/v1/completions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def plain_logprobs(lm, ids, interventions=()):
    """log p(token_t | tokens_<t) for t >= 1, from the Hugging Face model's own logits (one sequence, no padding)."""
    with lm.session(list(interventions)):
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0].float()  # [T, V]
    lp = torch.log_softmax(logits, -1)
    return [lp[t - 1, ids[t]].item() for t in range(1, len(ids))], lp


def ids_of(lm, text):
    return lm.tokenizer(text)["input_ids"]  # with <bos>, as the server tokenizes a plain-format prompt


@pytest.mark.parametrize("max_tokens", [0, 1, 3])
def test_echo_gives_the_prompt_tokens_log_probabilities(server, lm, max_tokens):
    status, r = post(
        server,
        {
            "model": "tiny-llama",
            "prompt": PROMPT,
            "echo": True,
            "logprobs": 2,
            "max_tokens": max_tokens,
            "temperature": 0,
        },
    )
    assert status == 200, r
    ids = ids_of(lm, PROMPT)
    ref, lp = plain_logprobs(lm, ids)
    (choice,) = r["choices"]
    got = choice["logprobs"]
    assert len(got["tokens"]) == len(ids) + max_tokens
    assert got["token_logprobs"][0] is None and got["top_logprobs"][0] is None  # nothing predicts the first
    assert got["token_logprobs"][1 : len(ids)] == pytest.approx(ref, abs=1e-4)
    assert got["tokens"][: len(ids)] == [lm.tokenizer.decode([t]) for t in ids]
    for t in range(1, len(ids)):  # the two alternatives are the two most likely tokens
        top2 = lp[t - 1].topk(2)
        want = {lm.tokenizer.decode([i]): v for i, v in zip(top2.indices.tolist(), top2.values.tolist())}
        assert got["top_logprobs"][t] == pytest.approx(want, abs=1e-4)
    reply = choice["text"][len(PROMPT) :]
    assert choice["text"].startswith(PROMPT) and r["usage"]["completion_tokens"] == max_tokens
    if max_tokens:  # the generated tokens follow, with their own log-probabilities
        plain = post(server, {"model": "tiny-llama", "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0})[1]
        assert reply == plain["choices"][0]["text"]
        full, _ = plain_logprobs(lm, ids + lm.tokenizer(reply, add_special_tokens=False)["input_ids"])
        assert got["token_logprobs"][len(ids) :] == pytest.approx(full[len(ids) - 1 :], abs=1e-4)


def test_echo_is_steered_like_the_reply(server, lm, vec):
    steer = {"vector": "v", "strength": 4.0}
    body = {"model": "tiny-llama", "prompt": PROMPT, "echo": True, "logprobs": 0, "max_tokens": 0, "steer": steer}
    got = post(server, body)[1]["choices"][0]["logprobs"]["token_logprobs"][1:]
    ids = ids_of(lm, PROMPT)
    steered, _ = plain_logprobs(lm, ids, [sl.Add(vec, strength=4.0)])
    unsteered, _ = plain_logprobs(lm, ids)
    assert got == pytest.approx(steered, abs=1e-4) and got != pytest.approx(unsteered, abs=1e-3)


def test_token_id_prompts_get_the_text_prompts_reply(server, lm):
    texts = [PROMPT, "hello"]
    by_text = post(server, {"model": "tiny-llama", "prompt": texts, "max_tokens": 6, "temperature": 0})[1]
    ids = [ids_of(lm, t) for t in texts]
    by_ids = post(server, {"model": "tiny-llama", "prompt": ids, "max_tokens": 6, "temperature": 0})[1]
    one = post(server, {"model": "tiny-llama", "prompt": ids[0], "max_tokens": 6, "temperature": 0})[1]
    assert [c["text"] for c in by_ids["choices"]] == [c["text"] for c in by_text["choices"]]
    assert one["choices"][0]["text"] == by_text["choices"][0]["text"]
    assert by_ids["usage"] == by_text["usage"]
    # echo of a token-id prompt shows the decoded prompt
    echo = post(server, {"model": "tiny-llama", "prompt": ids[1], "max_tokens": 0, "echo": True})[1]
    assert echo["choices"][0]["text"] == "hello"
    status, r = post(server, {"model": "tiny-llama", "prompt": [5, 500], "max_tokens": 2})
    assert status == 400 and "outside the vocabulary" in r["error"]["message"]
    status, r = post(server, {"model": "tiny-llama", "prompt": [[]], "max_tokens": 2})
    assert status == 400 and "must not be empty" in r["error"]["message"]
    status, r = post(server, {"model": "tiny-llama", "prompt": "x", "max_tokens": 0})
    assert status == 400 and "only meaningful with echo" in r["error"]["message"]


def test_a_preset_model_name_steers_as_its_extra_body(server, lm):
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", api_key="x", max_retries=0)
    cards = {m.id: m.steerlab["preset"] for m in client.models.list().data}
    assert cards == {"tiny-llama": None, "tiny-no": {"vector": "v", "kind": "add", "strength": 4.0, "positions": "all"}}

    def ask(model, **kw):
        r = client.completions.create(model=model, prompt=PROMPT, max_tokens=8, temperature=0, logprobs=1, **kw)
        return r.choices[0].text, r.choices[0].logprobs.token_logprobs

    preset = ask("tiny-no")
    assert preset == ask("tiny-llama", extra_body={"steer": {"vector": "v", "strength": 4.0}})
    assert preset[0] != ask("tiny-llama")[0]
    chat = client.chat.completions.create(
        model="tiny-no", messages=[{"role": "user", "content": "hi"}], max_tokens=5, temperature=0
    )
    same = client.chat.completions.create(
        model="tiny-llama",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=5,
        temperature=0,
        extra_body={"steer": {"vector": "v", "strength": 4.0}},
    )
    assert chat.choices[0].message.content == same.choices[0].message.content
    assert chat.model == "tiny-no"
    with pytest.raises(openai.BadRequestError, match="steering preset"):
        ask("tiny-no", extra_body={"steer": {"vector": "v", "strength": 1.0}})
