"""The API client (official openai SDK) against steerlab serve on 127.0.0.1, with faults injected by an
ASGI middleware in front of the real app: concurrency limit, retries, timeouts, cache, failure records."""

from __future__ import annotations

import asyncio
import json
import math
import os
import pickle
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

import steerlab
from conftest import tiny_lm
from steerlab.errors import BackendError, InputError
from steerlab.models.api import OpenAICompatible, options_from_top, parse_api_spec
from steerlab.models.api_base import RetryPolicy
from steerlab.models.backend import ChatBackend, OptionScorer, TextGenerator, user
from steerlab.serve import ServeConfig, create_app, start_server

CONVS = [user(f"question {i}") for i in range(8)]


class Faults:
    """ASGI middleware in front of the app: counts chat requests in flight and per body, and answers
    attempt ``k`` of a body with ``plan[k]``: an HTTP status, ``("sleep", s)`` (then the real reply),
    or None (the real reply after ``delay`` seconds). A request stops being in flight just before
    the last byte of its reply is sent (so the client cannot have seen the reply before)."""

    def __init__(self, app, plan=(), delay=0.0):
        self.app, self.plan, self.delay = app, list(plan), delay
        self.in_flight = self.max_in_flight = self.requests = 0
        self.attempts: dict[str, int] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        key = json.dumps(json.loads(body), sort_keys=True)
        attempt = self.attempts.get(key, 0)
        self.attempts[key] = attempt + 1
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        done = False

        async def send_counted(msg):
            nonlocal done
            if msg["type"] == "http.response.body" and not msg.get("more_body") and not done:
                done = True
                self.in_flight -= 1
            await send(msg)

        try:
            action = self.plan[attempt] if attempt < len(self.plan) else None
            if isinstance(action, int):
                err = json.dumps({"error": {"message": f"injected {action}", "type": "x"}}).encode()
                headers = [(b"content-type", b"application/json"), (b"retry-after", b"0")]
                await send_counted({"type": "http.response.start", "status": action, "headers": headers})
                await send_counted({"type": "http.response.body", "body": err})
                return
            await asyncio.sleep(action[1] if action else self.delay)
            sent = False

            async def replay():
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_counted)
        finally:
            if not done:
                self.in_flight -= 1


@pytest.fixture(scope="module")
def lm():
    return tiny_lm("qwen2")


@pytest.fixture
def faulty(lm):
    """Start the real server behind a :class:`Faults` middleware: ``faulty(plan=..., delay=...)``."""
    handles = []

    def start(plan=(), delay=0.0):
        app = Faults(create_app(lm, config=ServeConfig(model_names=("tiny",), batch_wait_ms=2)), plan, delay)
        handles.append(start_server(app))
        return app, f"http://127.0.0.1:{handles[-1].server_address[1]}/v1"

    yield start
    for h in handles:
        h.shutdown()


def client(url, tmp_path, **kw):
    kw.setdefault("backoff", 0.01)
    kw.setdefault("max_backoff", 0.05)
    return OpenAICompatible(url, "tiny", cache_dir=tmp_path / "cache", api_key_env="STEERLAB_TEST_NO_KEY", **kw)


def test_contracts_and_replies_equal_local_generation(faulty, lm, tmp_path):
    _, url = faulty()
    api = client(url, tmp_path)
    assert isinstance(api, ChatBackend) and isinstance(api, OptionScorer) and isinstance(api, TextGenerator)
    got = api.complete(CONVS[:3], max_new_tokens=6, temperature=1.0, seed=7)
    ref = lm.complete(CONVS[:3], max_new_tokens=6, temperature=1.0, seed=7)
    assert [(c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens) for c in got] == [
        (c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens) for c in ref
    ]
    assert api.generate(CONVS[:2], max_new_tokens=6) == lm.generate(CONVS[:2], max_new_tokens=6)
    assert pickle.loads(pickle.dumps(api)).generate(CONVS[:1], max_new_tokens=6) == lm.generate(
        CONVS[:1], max_new_tokens=6
    )


def test_concurrency_limit_is_respected(faulty, tmp_path):
    app, url = faulty(delay=0.15)
    out = client(url, tmp_path, concurrency=3).complete(CONVS, max_new_tokens=2)
    assert len(out) == 8 and not any(c.failed for c in out)
    assert app.requests == 8 and app.max_in_flight == 3


def test_retries_after_429_500_and_a_timeout(faulty, lm, tmp_path):
    app, url = faulty(plan=[429, 500, ("sleep", 3.0)])
    start = time.perf_counter()
    out = client(url, tmp_path, timeout=1.0, retries=3).complete(CONVS[:4], max_new_tokens=4)
    assert [c.text for c in out] == lm.generate(CONVS[:4], max_new_tokens=4)
    assert sorted(app.attempts.values()) == [4, 4, 4, 4]  # 429, 500, timed out, answered
    assert time.perf_counter() - start < 20


def test_exhausted_retries_are_recorded_and_retried_on_resume(faulty, lm, tmp_path):
    app, url = faulty(plan=[500, 500, 500, 500])
    api = client(url, tmp_path, retries=1)
    out = api.complete(CONVS[:2], max_new_tokens=4)  # attempts 1 and 2 fail
    assert all(c.failed and c.finish_reason == "error" and c.text == "" for c in out)
    assert "HTTP 500: injected 500 (after 2 attempts)" == out[0].error
    assert len(api.cache.failures()) == 2 and len(api.cache) == 0
    with pytest.raises(BackendError, match="2 of 2 requests failed"):
        api.generate(CONVS[:2], max_new_tokens=4)  # attempts 3 and 4; a bare string cannot carry a failure
    out = api.complete(CONVS[:2], max_new_tokens=4)  # attempt 5 succeeds
    assert [c.text for c in out] == lm.generate(CONVS[:2], max_new_tokens=4)
    assert api.cache.failures() == [] and len(api.cache) == 2


def test_fatal_statuses_raise_at_once(faulty, tmp_path):
    app, url = faulty(plan=[401])
    with pytest.raises(BackendError, match="HTTP 401.*check the API key"):
        client(url, tmp_path).complete(CONVS[:1])
    assert app.requests == 1
    with pytest.raises(BackendError, match="HTTP 404.*check the base URL"):
        client(url.replace("/v1", "/nope"), tmp_path).complete(CONVS[:1])


def test_cache_hits_on_rerun_and_one_entry_per_sample(faulty, tmp_path):
    app, url = faulty()
    api = client(url, tmp_path)
    first = api.complete(CONVS[:3], max_new_tokens=5, temperature=1.0, seed=3, n=2)
    assert app.requests == 3 and len(api.cache) == 6
    assert first[0].text != first[1].text  # two samples of one request: two entries, never swapped
    again = client(url, tmp_path).complete(CONVS[:3], max_new_tokens=5, temperature=1.0, seed=3, n=2)
    assert app.requests == 3 and again == first  # all from the cache
    other_seed = api.complete(CONVS[:1], max_new_tokens=5, temperature=1.0, seed=99)
    assert app.requests == 4 and other_seed[0].text not in {first[0].text, first[1].text}
    api.complete(CONVS[:1], max_new_tokens=5, temperature=1.0)  # unseeded sampling: a fresh draw,
    api.complete(CONVS[:1], max_new_tokens=5, temperature=1.0)  # never cached
    assert app.requests == 6


def test_option_logprobs_from_top_logprobs(faulty, lm, tmp_path):
    app, url = faulty()
    api = client(url, tmp_path, top_logprobs=3)
    convs = CONVS[:2]
    options = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    got = api.option_logprobs(convs, options)
    ids = [lm.tokenizer.convert_tokens_to_ids(o) for o in options]
    batch = lm.tokenize([lm.format(c) for c in convs])
    with torch.inference_mode():
        full = torch.log_softmax(lm.logits_for(lm.hidden_states(batch)[:, -1]).float(), -1)  # [2, V]
    for row, d in enumerate(got):
        top3 = set(full[row].topk(3).indices.tolist())
        for o, i in zip(options, ids):
            if i in top3:
                assert d[o] == pytest.approx(full[row, i].item(), abs=1e-4)
            else:
                assert d[o] == -math.inf  # absent from the top list
    assert api.option_logprobs(convs, options) == got and app.requests == 2  # cached


def test_options_from_top_sums_whitespace_variants():
    got = options_from_top([(" A", -0.5), ("A", -2.0), ("B", -1.0)], ["A", "B", "C"])
    assert got["A"] == pytest.approx(math.log(math.exp(-0.5) + math.exp(-2.0)))
    assert got["B"] == -1.0 and got["C"] == -math.inf


def test_retry_delays_grow_with_jitter_and_honour_retry_after():
    p = RetryPolicy(retries=5, backoff=0.5, max_backoff=4.0)
    rng = random.Random(0)
    for k, cap in enumerate([0.5, 1.0, 2.0, 4.0, 4.0]):
        waits = [p.delay(k, rng=rng) for _ in range(200)]
        assert cap / 2 <= min(waits) and max(waits) <= cap and len(set(waits)) > 100
    assert p.delay(0, retry_after=3.0, rng=rng) >= 3.0
    assert p.delay(0, retry_after=100.0, rng=rng) <= 4.0  # capped
    with pytest.raises(InputError):
        RetryPolicy(retries=-1)


def test_bad_arguments_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="http"):
        OpenAICompatible("127.0.0.1:8000", "m")
    with pytest.raises(InputError, match="extra_body must not set temperature"):
        OpenAICompatible("http://x/v1", "m", extra_body={"temperature": 1})
    api = OpenAICompatible("http://127.0.0.1:9/v1", "m", cache_dir=tmp_path)
    with pytest.raises(InputError, match="seeds for 2 conversations"):
        api.complete(CONVS[:2], seed=[1, 2, 3])
    with pytest.raises(InputError, match="message must be"):
        api.complete([[{"role": "user"}]])
    with pytest.raises(InputError, match="options"):
        api.option_logprobs(CONVS[:1], [])


def test_unreachable_server_fails_items_not_the_call(tmp_path):
    api = OpenAICompatible("http://127.0.0.1:9/v1", "m", cache_dir=tmp_path, retries=1, backoff=0.01, timeout=2)
    (c,) = api.complete(CONVS[:1])
    assert c.failed and c.error.startswith("connection error") and "after 2 attempts" in c.error


def test_parse_api_spec():
    b = parse_api_spec("openai:gpt-4o-mini@http://127.0.0.1:8000/v1")
    assert (b.model, b.base_url, b.name) == (
        "gpt-4o-mini",
        "http://127.0.0.1:8000/v1",
        "api:gpt-4o-mini@http://127.0.0.1:8000/v1",
    )
    assert parse_api_spec("openai:gpt-4o-mini").base_url == "https://api.openai.com/v1"
    assert parse_api_spec("anthropic:claude-haiku-4-5").model == "claude-haiku-4-5"
    assert parse_api_spec("default") is None
    with pytest.raises(InputError):
        parse_api_spec("openai:@http://x")


# ---------------------------------------------------------------------------- a real kill


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_cli_server(model_dir: Path, port: int) -> subprocess.Popen:
    src = str(Path(steerlab.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from steerlab.cli import main; main()",
            "serve",
            str(model_dir),
            "--port",
            str(port),
            "--device",
            "cpu",
            "--served-model-name",
            "tiny",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"steerlab serve exited: {proc.stderr.read().decode()}") from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("steerlab serve did not start")


def test_server_killed_mid_run_loses_nothing_on_resume(lm, tmp_path):
    import threading

    model_dir = tmp_path / "model"
    lm.model.save_pretrained(model_dir)
    lm.tokenizer.save_pretrained(model_dir)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    convs = [user(f"item {i}") for i in range(10)]
    kw = dict(max_new_tokens=8, temperature=1.0, seed=100)
    served = steerlab.load_model(str(model_dir), device="cpu")  # the model as the server loads it
    ref = served.complete(convs, batch_size=1, **kw)  # each row alone
    api = client(url, tmp_path, concurrency=1, retries=1)
    proc = _start_cli_server(model_dir, port)  # `steerlab serve` in its own process
    try:
        box = {}
        worker = threading.Thread(target=lambda: box.setdefault("out", api.complete(convs, **kw)))
        worker.start()
        while len(api.cache) < 3 and worker.is_alive():
            time.sleep(0.01)
        proc.kill()  # SIGKILL: no graceful shutdown, a request in flight is cut
        proc.wait()
        worker.join()
    finally:
        if proc.poll() is None:
            proc.kill()
    first = box["out"]
    done = [c for c in first if not c.failed]
    assert 3 <= len(done) < len(convs) and all(c.error.startswith("connection error") for c in first if c.failed)
    assert len(api.cache) == len(done) and len(api.cache.failures()) == len(convs) - len(done)
    # restarted on the same port (in this process, to spare a second start-up of torch)
    app = Faults(create_app(served, config=ServeConfig(model_names=("tiny",))))
    restarted = start_server(app, port=port)
    try:
        resumed = client(url, tmp_path).complete(convs, **kw)
    finally:
        restarted.shutdown()
    assert [c.text for c in resumed] == [c.text for c in ref]  # nothing lost, nothing changed
    assert [r for r, f in zip(resumed, first) if not f.failed] == done
    assert app.requests == len(convs) - len(done)  # only the failed ones were asked again
    assert api.cache.failures() == [] and len(api.cache) == len(convs)


def test_a_new_cache_opened_by_many_threads_at_once(tmp_path):
    """Connections opening a new cache while others already read and write it (a client's first
    request racing a reader of ``len(cache)``, as in the kill test above, or two runs sharing the
    default cache directory) must not fail with "database is locked"."""
    import threading

    from steerlab.models.api_cache import ReplyCache

    for trial in range(20):
        d = tmp_path / f"cache{trial}"
        barrier, errors, stop = threading.Barrier(8), [], threading.Event()

        def work(i: int, d=d, barrier=barrier, errors=errors, stop=stop) -> None:  # this trial's, bound now
            barrier.wait()
            try:
                cache = ReplyCache(d)
                if i % 2:
                    cache.put(f"k{i}", {}, {"i": i})
                else:
                    while not stop.is_set() and len(cache) < 4:
                        pass
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        threads[1].join(30)
        stop.set()
        for t in threads:
            t.join()
        assert errors == []
        assert sorted(ReplyCache(d).keys()) == ["k1", "k3", "k5", "k7"]
