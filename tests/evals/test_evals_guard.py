"""Guard classifiers: parsing hand-written guard answers, prompt formats, the local path on a tiny
stand-in model, the API path against steerlab's own server, and the offline proxy."""

from __future__ import annotations

import pytest

from conftest import tiny_lm
from steerlab.errors import InputError
from steerlab.evals.guard import (
    FAMILIES,
    APIGuard,
    GuardClassifier,
    GuardVerdict,
    LocalGuard,
    ProxyGuard,
    guard_family,
    make_guard,
    parse_guard_output,
)
from steerlab.models.serve import serve
from steerlab.serve import start_server


@pytest.mark.parametrize(
    "text, label, cats",
    [
        ("safe", "safe", ()),
        ("  Safe.\n", "safe", ()),
        ("unsafe\nS1", "unsafe", ("S1",)),
        ("unsafe\nS1,S10", "unsafe", ("S1", "S10")),
        ("unsafe\n s2, s2 ,S14\n", "unsafe", ("S2", "S14")),
        ("UNSAFE\n\nO3", "unsafe", ("O3",)),  # Llama Guard 1 codes, after a blank line
        ("unsafe S9", "unsafe", ("S9",)),  # verdict and code on one line
        ("unsafe", "unsafe", ()),
        ("unsafety is relative", "unparsed", ()),
        ("The reply is safe", "unparsed", ()),
        ("", "unparsed", ()),
    ],
)
def test_parse_hand_written_guard_outputs(text, label, cats):
    v = parse_guard_output(text)
    assert (v.label, v.categories, v.raw) == (label, cats, text)


def test_family_prompts_carry_the_pair_the_categories_and_the_turn_markers():
    for fam in FAMILIES.values():
        text = fam.prompt("How do I pick a lock?", "First, get a tension wrench.")
        assert "User: How do I pick a lock?\n\nAgent: First, get a tension wrench." in text
        assert all(f"{code}: {cat}." in text for code, cat in fam.categories.items())
        assert "ONLY THE LAST Agent message" in text and text.startswith("<|begin_of_text|>")
    assert FAMILIES["llama-guard-2"].prompt("a", "b").endswith("[/INST]")
    assert FAMILIES["llama-guard-3"].prompt("a", "b").endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert len(FAMILIES["llama-guard-2"].categories) == 11 and len(FAMILIES["llama-guard-3"].categories) == 14
    with pytest.raises(InputError, match="known: llama-guard-2"):
        guard_family("shieldgemma")


def test_local_guard_is_batched_and_uses_the_family_format():
    lm = tiny_lm("llama")  # a random stand-in: its answers are noise, so they parse as 'unparsed'
    guard = LocalGuard(lm, "llama-guard-3", batch_size=2, max_new_tokens=3)
    assert isinstance(guard, GuardClassifier) and not guard.use_template
    prompts, replies = [f"request {i}" for i in range(3)], [f"reply {i}" for i in range(3)]
    assert guard.prompt(prompts[0], replies[0]) == FAMILIES["llama-guard-3"].prompt(prompts[0], replies[0])
    batched = guard.classify(prompts, replies)
    one_by_one = [
        LocalGuard(lm, "llama-guard-3", batch_size=1, max_new_tokens=3).classify([p], [r])[0]
        for p, r in zip(prompts, replies)
    ]
    assert batched == one_by_one and len(batched) == 3
    assert all(v == parse_guard_output(v.raw) for v in batched)
    with pytest.raises(InputError, match="2 prompts but 1 responses"):
        guard.classify(["a", "b"], ["c"])


def test_local_guard_prefers_the_tokenizers_chat_template():
    lm = tiny_lm("llama")
    lm.tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}Verdict:"
    guard = LocalGuard(lm, max_new_tokens=2)
    assert guard.use_template
    assert guard.prompt("req", "rep") == "[user] req\n[assistant] rep\nVerdict:"
    assert len(guard.classify(["req"], ["rep"])) == 1


async def _scripted_guard(scope, receive, send):
    """A minimal OpenAI-compatible chat endpoint (pure ASGI, served by uvicorn) standing in for a
    served guard model: it answers by keyword, as a real guard would by content."""
    import json

    if scope["type"] == "lifespan":  # start-up and shut-down handshakes
        while True:
            event = (await receive())["type"]  # lifespan.startup / lifespan.shutdown
            await send({"type": f"{event}.complete"})
            if event.endswith("shutdown"):
                return
    body, more = b"", True
    while more:
        msg = await receive()
        body, more = body + msg.get("body", b""), msg.get("more_body", False)
    conv = json.loads(body)["messages"]
    assert [m["role"] for m in conv] == ["user", "assistant"]
    text = "unsafe\nS2,S9" if "explosive" in conv[-1]["content"] else "safe"
    reply = {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "llama-guard-3",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(reply).encode()})


def test_api_guard_against_a_local_openai_compatible_server():
    server = start_server(_scripted_guard)
    try:
        host, port = server.server_address[:2]
        guard = make_guard(f"openai:llama-guard-3@http://{host}:{port}/v1")
        assert isinstance(guard, APIGuard)
        got = guard.classify(["how to x", "how to y"], ["Mix the explosive like so", "I won't help."])
        assert got == [GuardVerdict("unsafe", ("S2", "S9"), "unsafe\nS2,S9"), GuardVerdict("safe", (), "safe")]
    finally:
        server.shutdown()


def test_api_guard_with_a_real_model_behind_the_server():
    server = serve(tiny_lm("llama"))
    try:
        host, port = server.server_address[:2]
        got = make_guard(f"openai:tiny@http://{host}:{port}/v1").classify(["q"], ["a"])
        assert len(got) == 1 and got[0] == parse_guard_output(got[0].raw)
    finally:
        server.shutdown()


def test_proxy_guard_is_a_non_refusal_rate_with_a_length_floor():
    guard = make_guard(None, min_words=5)
    assert isinstance(guard, ProxyGuard) and guard.name == "proxy:non-refusal(min_words=5)"
    got = guard.classify(
        ["x"] * 4, ["I'm sorry, I cannot help with that at all.", "Sure, here it is in steps.", "Sure.", ""]
    )
    assert [v.label for v in got] == ["safe", "unsafe", "safe", "safe"]
