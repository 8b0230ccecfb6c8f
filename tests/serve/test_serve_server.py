"""steerlab serve on 127.0.0.1, queried with the official openai client: every reply is checked
against the core computed directly (LanguageModel.complete, a teacher-forced forward pass)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import openai
import pytest
import torch

import steerlab as sl
from conftest import tiny_lm
from steerlab.models.backend import user
from steerlab.models.serve import serve

PROMPT = "hello there"


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
    srv = serve(
        lm,
        vectors={"v": vec},
        any_model_name=False,
        check_context=True,
        max_tokens=64,
        max_n=4,
        max_batch=8,
        max_request_bytes=20_000,
        batch_wait_ms=2,
    )
    yield srv
    srv.shutdown()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", api_key="unused", max_retries=0)


def chat(client, content=PROMPT, **kw):
    kw.setdefault("max_tokens", 12)
    kw.setdefault("temperature", 0)
    return client.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": content}], **kw)


def post(server, path, body, headers=None):
    """Raw HTTP POST; returns (status, decoded JSON)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.server_address[1]}{path}",
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def teacher_forced_logprobs(lm, prompt_text, token_ids):
    """log p(token_t | prompt, tokens_<t) from ONE forward pass over prompt + reply (full vocabulary)."""
    batch = lm.tokenize([prompt_text])
    ids = torch.cat([batch.input_ids, torch.tensor([token_ids])], dim=1)
    with torch.inference_mode():
        logits = lm.model(input_ids=ids).logits[0].float()  # [T, V]
    lp = torch.log_softmax(logits, -1)
    width = batch.input_ids.shape[1]
    return lp[width - 1 : width - 1 + len(token_ids)], [
        lp[width - 1 + t, tok].item() for t, tok in enumerate(token_ids)
    ]


def test_models_lists_the_model_and_its_vectors(client, server):
    (card,) = client.models.list().data
    assert card.id == "tiny-llama" and card.object == "model" and card.owned_by == "steerlab"
    assert card.steerlab["vectors"] == [{"name": "v", "layer": 1, "site": "resid_post"}]
    assert client.models.retrieve("tiny-llama").id == "tiny-llama"
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], max_tokens=2)


def test_greedy_chat_equals_the_core_with_true_finish_reason_and_usage(client, lm):
    ref = lm.complete([user(PROMPT)], max_new_tokens=12)[0]
    r = chat(client)
    assert r.id.startswith("chatcmpl-") and r.created > 0 and r.object == "chat.completion"
    assert r.choices[0].message.content == ref.text and r.choices[0].finish_reason == ref.finish_reason == "length"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (ref.prompt_tokens, 12)
    # a stop string taken from the reply itself: cut there, finish_reason "stop"
    stop = ref.text[3:5]
    r = chat(client, stop=[stop])
    cut = lm.complete([user(PROMPT)], max_new_tokens=12, stop=[stop])[0]
    assert cut.finish_reason == "stop" and r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == cut.text == ref.text[: ref.text.index(stop)].strip()
    assert r.usage.completion_tokens == cut.completion_tokens < 12


def test_n_samples_are_seed_plus_j(client, lm):
    r = chat(client, n=3, temperature=1.0, seed=11)
    ref = lm.complete([user(PROMPT)] * 3, max_new_tokens=12, temperature=1.0, seed=[11, 12, 13])
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert [c.message.content for c in r.choices] == [c.text for c in ref]
    assert len({c.text for c in ref}) > 1  # the samples differ
    assert r.usage.completion_tokens == sum(c.completion_tokens for c in ref)


def test_stream_joins_to_the_reply(client):
    kw = dict(n=2, temperature=1.0, seed=5, max_tokens=20)
    whole = chat(client, **kw)
    parts: dict[int, list[str]] = {0: [], 1: []}
    finish, usage, chunks = {}, None, 0
    for ch in chat(client, stream=True, stream_options={"include_usage": True}, **kw):
        chunks += 1
        if not ch.choices:
            usage = ch.usage
            continue
        c = ch.choices[0]
        parts[c.index].append(c.delta.content or "")
        if c.finish_reason:
            finish[c.index] = c.finish_reason
    assert chunks > 10
    for c in whole.choices:
        assert "".join(parts[c.index]) == c.message.content
        assert finish[c.index] == c.finish_reason
    assert usage.completion_tokens == whole.usage.completion_tokens


def test_raw_completions_with_logprobs_match_a_teacher_forced_pass(client, lm):
    prompt = "The cat"
    r = client.completions.create(model="tiny-llama", prompt=prompt, max_tokens=6, temperature=0, logprobs=3)
    (ref,) = lm.complete([prompt], max_new_tokens=6, formatted=True)
    assert r.choices[0].text == lm.tokenizer.decode(list(ref.token_ids), skip_special_tokens=True)
    assert r.choices[0].finish_reason == ref.finish_reason and r.id.startswith("cmpl-")
    full, chosen = teacher_forced_logprobs(lm, prompt, list(ref.token_ids))
    assert r.choices[0].logprobs.token_logprobs == pytest.approx(chosen, abs=1e-4)
    for t, top in enumerate(r.choices[0].logprobs.top_logprobs):
        values, ids = full[t].topk(3)
        assert list(top.values()) == pytest.approx(values.tolist(), abs=1e-4)
        assert max(top.values()) == pytest.approx(chosen[t], abs=1e-4)  # greedy picks the top token


def test_chat_logprobs_match_a_teacher_forced_pass(client, lm):
    r = chat(client, max_tokens=5, logprobs=True, top_logprobs=2, temperature=1.0, seed=3)
    ref = lm.complete([user(PROMPT)], max_new_tokens=5, temperature=1.0, seed=3)[0]
    _, chosen = teacher_forced_logprobs(lm, lm.format(user(PROMPT)), list(ref.token_ids))
    content = r.choices[0].logprobs.content
    assert [c.logprob for c in content] == pytest.approx(chosen, abs=1e-4)
    assert all(len(c.top_logprobs) == 2 and c.top_logprobs[0].logprob >= c.top_logprobs[1].logprob for c in content)


def test_steering_per_request(client, lm, vec):
    base = chat(client).choices[0].message.content
    assert chat(client, extra_body={"steer": {"vector": "v", "strength": 0.0}}).choices[0].message.content == base
    steered = chat(client, extra_body={"steer": {"vector": "v", "strength": 8.0}}).choices[0].message.content
    ref = lm.complete([user(PROMPT)], max_new_tokens=12, interventions=[sl.Add(vec, strength=8.0)])[0].text
    assert steered == ref != base
    at2 = chat(client, extra_body={"steer": {"vector": "v", "strength": 8.0, "layers": [2]}}).choices[0].message.content
    assert (
        at2
        == lm.complete([user(PROMPT)], max_new_tokens=12, interventions=[sl.Add(vec, strength=8.0, layers=2)])[0].text
    )
    ablated = chat(client, extra_body={"steer": {"vector": "v", "kind": "ablate"}}).choices[0].message.content
    assert (
        ablated == lm.complete([user(PROMPT)], max_new_tokens=12, interventions=[sl.Ablate(vec, layers="all")])[0].text
    )


@pytest.mark.parametrize(
    ("steer", "message"),
    [
        ({"vector": "nope", "strength": 1}, "no vector named 'nope'"),
        ({"vector": "/etc/passwd", "strength": 1}, "no vector named"),  # a request can never name a file
        ({"vector": "v"}, "needs a strength"),
        ({"vector": "v", "kind": "ablate", "strength": 1}, "takes no strength"),
        ({"vector": "v", "strength": 1, "layers": [7]}, "out of range"),
        ({"vector": "v", "strength": 1, "positions": "middle"}, "unknown positions"),
        ({"vector": "v", "strength": 1, "file": "x.safetensors"}, "unknown field 'file' in 'steer'"),
    ],
)
def test_bad_steering_is_a_400(client, steer, message):
    with pytest.raises(openai.BadRequestError, match=message):
        chat(client, extra_body={"steer": steer})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "tiny-llama"}, "'messages' is required"),
        ({"model": "tiny-llama", "messages": []}, "messages: List should have at least 1 item"),
        ({"model": "tiny-llama", "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "n": 5}, "n=5 is more than"),
        ({"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "max_tokens": 65}, "max_tokens 65"),
        (
            {"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 65},
            "max_tokens 65",
        ),
        (
            {"model": "tiny-llama", "messages": [{"role": "user", "content": "x" * 80}], "max_tokens": 60},
            "context of 128",
        ),
        (
            {"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]},
            "5 stop strings",
        ),
        (
            {"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "tools": []},
            "'tools' is not supported",
        ),
        (
            {"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "temprature": 1},
            "unknown field 'temprature'",
        ),
        ({"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "presence_penalty": 1}, "penalties"),
        ({"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, "needs logprobs"),
        (
            {"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "logprobs": True, "stream": True},
            "logprobs with stream",
        ),
        ({"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_malformed_requests_get_a_400_with_a_json_error(server, body, message):
    status, reply = post(server, "/v1/chat/completions", body)
    assert status == 400, reply
    assert message in reply["error"]["message"] and reply["error"]["type"] == "invalid_request_error"


def test_transport_level_errors_are_json(server):
    assert post(server, "/v1/chat/completions", b"{not json")[0] == 400
    assert post(server, "/v1/chat/completions", b'{"temperature": NaN}')[1]["error"]["message"].startswith(
        "the request body is not valid JSON"
    )
    status, reply = post(server, "/v1/chat/completions", b"x" * 30_000)
    assert status == 413 and "larger than this server allows" in reply["error"]["message"]
    status, reply = post(server, "/v1/nothing", {})
    assert status == 404 and "no route" in reply["error"]["message"]
    status, reply = post(
        server, "/v1/completions", {"model": "tiny-llama", "prompt": "x", "echo": True, "stream": True}
    )
    assert status == 400 and "echo with stream" in reply["error"]["message"]


def test_an_overflowing_steer_fails_alone_not_its_batch_mates(lm, vec):
    from steerlab.vectors.vector import SteeringVector

    big = SteeringVector(vec.vector * 1000, vec.meta)
    srv = serve(lm, vectors={"big": big}, batch_wait_ms=300)
    try:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{srv.server_address[1]}/v1", api_key="x", max_retries=0)
        out: dict[str, object] = {}

        def ask(name: str, steer: dict | None) -> None:
            try:
                out[name] = chat(c, extra_body={"steer": steer} if steer else None).choices[0].message.content
            except openai.BadRequestError as e:
                out[name] = e

        threads = [
            threading.Thread(target=ask, args=a)
            for a in [("plain", None), ("boom", {"vector": "big", "strength": 3e38})]
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert out["plain"] == lm.complete([user(PROMPT)], max_new_tokens=12)[0].text
        assert isinstance(out["boom"], openai.BadRequestError) and "overflowed" in str(out["boom"])
        assert srv.app.state.steerlab.batcher.stats.split == 1  # they shared a batch, which was split
        with pytest.raises(openai.BadRequestError, match="within float32"):
            chat(c, extra_body={"steer": {"vector": "big", "strength": 1e39}})
    finally:
        srv.shutdown()


def test_api_key_is_required_when_set(lm):
    srv = serve(lm, api_key="s3cret")
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
        with pytest.raises(openai.AuthenticationError, match="invalid or missing API key"):
            openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
        status, reply = post(srv, "/v1/models", {})  # no key at all (and a POST to a GET route)
        assert status == 401 and reply["error"]["code"] == "invalid_api_key"
        assert openai.OpenAI(base_url=url, api_key="s3cret").models.list().data[0].id == "tiny-llama"
        with urllib.request.urlopen(url.replace("/v1", "/health"), timeout=10) as r:  # health needs no key
            assert json.loads(r.read()) == {"status": "ok"}
    finally:
        srv.shutdown()


def test_requests_arriving_together_share_a_batch(lm):
    srv = serve(lm, batch_wait_ms=300)
    try:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{srv.server_address[1]}/v1", api_key="x")
        prompts = ["a b c", "hello", "what is up", "zz"]
        out: dict[int, str] = {}

        def ask(i: int) -> None:
            out[i] = chat(c, prompts[i], temperature=1.0, seed=i).choices[0].message.content

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = srv.app.state.steerlab.batcher.stats
        assert stats.requests == 4 and stats.max_rows >= 3  # one forward pass served (nearly) all four
        ref = lm.complete(
            [user(p) for p in prompts], max_new_tokens=12, temperature=1.0, seed=[0, 1, 2, 3], batch_size=1
        )  # each row alone
        assert [out[i] for i in range(4)] == [c.text for c in ref]
    finally:
        srv.shutdown()
