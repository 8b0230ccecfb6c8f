"""steerlab serve on the default model (Gemma 3 270M, 262k vocabulary, no chat template): slow."""

from __future__ import annotations

import openai
import pytest

import steerlab as sl
from steerlab.models.backend import user
from steerlab.models.serve import serve

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "How do I bake bread?"}]


def test_default_model_served_steered_and_streamed(default_lm):
    from steerlab.data import load_shipped

    pairs = load_shipped("refusal_pairs")[:8]
    vec = sl.extract(
        default_lm,
        [sl.Example(p.prompt, p.positive) for p in pairs],
        [sl.Example(p.prompt, p.negative) for p in pairs],
        layers=[6],
        normalization="activation_norm",
    )[6]
    srv = serve(default_lm, vectors={"refusal": vec}, any_model_name=False, check_context=True)
    try:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{srv.server_address[1]}/v1", api_key="x", max_retries=0)
        name = default_lm.model_id

        def ask(**kw):
            return c.chat.completions.create(model=name, messages=MESSAGES, max_tokens=10, temperature=0, **kw)

        plain = ask(logprobs=True, top_logprobs=5)
        ref = default_lm.complete([user(MESSAGES[0]["content"])], max_new_tokens=10)[0]
        assert plain.choices[0].message.content == ref.text and plain.choices[0].finish_reason == ref.finish_reason
        first = plain.choices[0].logprobs.content[0]
        assert first.top_logprobs[0].logprob == pytest.approx(first.logprob, abs=1e-4)  # greedy takes the top token
        zero = ask(extra_body={"steer": {"vector": "refusal", "strength": 0.0}})
        assert zero.choices[0].message.content == ref.text
        steered = ask(extra_body={"steer": {"vector": "refusal", "strength": 0.3}}).choices[0].message.content
        expected = default_lm.complete(
            [user(MESSAGES[0]["content"])], max_new_tokens=10, interventions=[sl.Add(vec, strength=0.3)]
        )[0].text
        assert steered == expected != ref.text
        streamed = "".join(ch.choices[0].delta.content or "" for ch in ask(stream=True) if ch.choices)
        assert streamed == ref.text
    finally:
        srv.shutdown()


def test_default_model_echo_and_token_ids(default_lm):
    """Echo log-probabilities equal a plain forward of Gemma to 1e-4; its token ids (with <bos>) get the text's reply."""
    import torch

    srv = serve(default_lm, check_context=True)
    try:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{srv.server_address[1]}/v1", api_key="x", max_retries=0)
        name, text = default_lm.model_id, "Question: What is the capital of France?\nAnswer: Paris"
        ids = default_lm.tokenizer(text)["input_ids"]
        assert ids[0] == default_lm.tokenizer.bos_token_id
        echo = c.completions.create(model=name, prompt=ids, max_tokens=0, echo=True, logprobs=1)
        with torch.inference_mode():
            lp = torch.log_softmax(default_lm.model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
        ref = [lp[t - 1, ids[t]].item() for t in range(1, len(ids))]
        got = echo.choices[0].logprobs.token_logprobs
        assert got[0] is None and got[1:] == pytest.approx(ref, abs=1e-4)
        by_text = c.completions.create(model=name, prompt=text, max_tokens=6, temperature=0)
        by_ids = c.completions.create(model=name, prompt=ids, max_tokens=6, temperature=0)
        assert by_ids.choices[0].text == by_text.choices[0].text
        assert by_ids.usage.prompt_tokens == by_text.usage.prompt_tokens == len(ids)
    finally:
        srv.shutdown()
