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
