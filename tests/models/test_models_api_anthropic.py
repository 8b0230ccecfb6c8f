"""The Anthropic backend on the official anthropic SDK, offline: a fake transport answers the requests."""

from __future__ import annotations

import json

import pytest

anthropic = pytest.importorskip("anthropic")
httpx2 = pytest.importorskip("httpx2")

from steerlab.errors import BackendError, InputError  # noqa: E402
from steerlab.models.api_anthropic import AnthropicChat  # noqa: E402
from steerlab.models.backend import ChatBackend, OptionScorer, TextGenerator, user  # noqa: E402


class FakeAnthropic:
    """Answers POST /v1/messages like the Messages API; fails the first attempts as planned."""

    def __init__(self, plan=(), stop_reason="end_turn"):
        self.plan = list(plan)
        self.bodies: list[dict] = []
        self.stop_reason = stop_reason

    def __call__(self, request):
        body = json.loads(request.content)
        key = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        self.bodies.append({"path": request.url.path, "key": key, **body})  # SDK versions differ in the header
        if self.plan:
            status = self.plan.pop(0)
            return httpx2.Response(
                status, json={"type": "error", "error": {"type": "x", "message": f"injected {status}"}}
            )
        text = " echo: " + body["messages"][-1]["content"] + " "
        return httpx2.Response(
            200,
            json={
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": text}],
                "stop_reason": self.stop_reason,
                "stop_sequence": None,
                "usage": {"input_tokens": 11, "output_tokens": 4},
            },
        )


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("STEERLAB_TEST_ANTHROPIC_KEY", "sk-test")


def backend(fake, tmp_path, **kw):
    return AnthropicChat(
        "claude-test",
        api_key_env="STEERLAB_TEST_ANTHROPIC_KEY",
        base_url="http://fake.invalid",
        transport=httpx2.MockTransport(fake),
        cache_dir=tmp_path,
        backoff=0.01,
        max_backoff=0.02,
        **kw,
    )


def test_requests_follow_the_messages_api(key, tmp_path):
    fake = FakeAnthropic()
    api = backend(fake, tmp_path)
    assert isinstance(api, ChatBackend) and isinstance(api, TextGenerator) and not isinstance(api, OptionScorer)
    out = api.complete(
        [user("hi", system="Be brief."), user("yo")], max_new_tokens=9, temperature=0.5, seed=4, stop=["\n\n"]
    )
    assert [(c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens) for c in out] == [
        ("echo: hi", "stop", 11, 4),
        ("echo: yo", "stop", 11, 4),
    ]
    first = fake.bodies[0]
    assert first["path"] == "/v1/messages" and first["key"] == "sk-test"
    assert first["system"] == "Be brief." and first["messages"] == [{"role": "user", "content": "hi"}]
    assert (first["max_tokens"], first["temperature"], first["stop_sequences"]) == (9, 0.5, ["\n\n"])
    assert "seed" not in first and "steerlab_seed" not in first  # the API has no seed; it only keys the cache
    assert "system" not in fake.bodies[1]
    assert (
        api.complete([user("hi", system="Be brief.")], max_new_tokens=9, temperature=0.5, seed=4, stop=["\n\n"])[0].text
        == "echo: hi"
        and len(fake.bodies) == 2
    )  # cached
    api.complete([user("hi", system="Be brief.")], max_new_tokens=9, temperature=0.5, seed=5, stop=["\n\n"])
    assert len(fake.bodies) == 3  # another seed is another sample


def test_overloaded_and_rate_limited_are_retried(key, tmp_path):
    fake = FakeAnthropic(plan=[529, 429, 500])
    assert backend(fake, tmp_path, retries=3).generate([user("x")]) == ["echo: x"]
    assert len(fake.bodies) == 4


def test_length_and_refusal_stop_reasons(key, tmp_path):
    assert backend(FakeAnthropic(stop_reason="max_tokens"), tmp_path).complete([user("x")])[0].finish_reason == "length"
    assert backend(FakeAnthropic(stop_reason="refusal"), tmp_path / "b").complete([user("x")])[0].finish_reason == (
        "content_filter"
    )


def test_failures_and_errors(key, tmp_path, monkeypatch):
    (c,) = backend(FakeAnthropic(plan=[400]), tmp_path).complete([user("x")])
    assert c.failed and c.error == "HTTP 400: injected 400 (after 1 attempt)"
    with pytest.raises(BackendError, match="HTTP 401"):
        backend(FakeAnthropic(plan=[401]), tmp_path).complete([user("y")])
    with pytest.raises(InputError, match="one sample per request"):
        backend(FakeAnthropic(), tmp_path).complete([user("x")], n=2)
    with pytest.raises(InputError, match="between 0 and 1"):
        backend(FakeAnthropic(), tmp_path).complete([user("x")], temperature=1.5)
    with pytest.raises(InputError, match="one system message"):
        backend(FakeAnthropic(), tmp_path).complete(
            [[{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]]
        )
    monkeypatch.delenv("STEERLAB_TEST_ANTHROPIC_KEY")
    with pytest.raises(BackendError, match="no API key"):
        backend(FakeAnthropic(), tmp_path).complete([user("z")])
