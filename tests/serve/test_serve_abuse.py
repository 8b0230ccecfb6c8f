"""steerlab serve under abuse: long prompts, abandoned requests, deadlines, slow clients, web
pages, shutdown with requests in flight. The server runs on 127.0.0.1; a tiny model is made
slow (every forward pass sleeps ``STEP_S``) so a long request really holds the model."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import tiny_lm
from steerlab.models.backend import Completion
from steerlab.models.serve import serve
from steerlab.serve.service import ServeConfig, Service

STEP_S = 0.03  # seconds every forward pass of the slow model sleeps
LONG = 110  # tokens of the long request: at least LONG * STEP_S = 3.3 s of model time
PROMPT = "hello there"


@pytest.fixture(scope="module")
def slow_lm():
    lm = tiny_lm("llama")
    calls = {"n": 0}

    def slow(module, args, kwargs):
        calls["n"] += 1
        time.sleep(STEP_S)

    lm.model.register_forward_pre_hook(slow, with_kwargs=True)
    lm.forward_calls = calls  # the test reads how many forward passes ran
    return lm


def url(srv, path):
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


def post(srv, path, body, headers=None, timeout=60):
    """Raw HTTP POST; returns (status, headers, decoded JSON)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url(srv, path), data=data, method="POST", headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())


def completion(max_tokens, prompt=PROMPT, **kw):
    return {"model": "tiny-llama", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, **kw}


def timed(srv, body):
    t = time.perf_counter()
    status, _, reply = post(srv, "/v1/completions", body)
    return time.perf_counter() - t, status, reply


def abandon(srv, body, after_s):
    """Send ``body`` on a raw socket and close it ``after_s`` later, without reading the reply."""
    data = json.dumps(body).encode()
    s = socket.create_connection(srv.server_address, timeout=10)
    s.sendall(
        b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    time.sleep(after_s)
    s.close()


def test_the_long_request_really_is_long(slow_lm):
    """The premise of the cancellation tests: greedy, this prompt runs to max_tokens (no early end)."""
    ref = slow_lm.complete([PROMPT], formatted=True, max_new_tokens=LONG)[0]
    assert ref.finish_reason == "length" and ref.completion_tokens == LONG


@pytest.mark.parametrize("stream", [False, True])
def test_an_abandoned_request_frees_the_model(slow_lm, stream):
    srv = serve(slow_lm, max_tokens=LONG, batch_wait_ms=1)
    try:
        short = completion(2)
        idle = min(timed(srv, short)[0] for _ in range(3))  # the short request on an idle server
        start = slow_lm.forward_calls["n"]
        abandon(srv, completion(LONG, stream=stream), after_s=0.3)
        after, status, reply = timed(srv, short)
        assert status == 200 and reply["usage"]["completion_tokens"] == 2
        # Without cancellation the short request waits for the long one's ~LONG * STEP_S seconds.
        assert after < 3 * idle + 1.0, (after, idle)
        assert after < LONG * STEP_S / 2
        time.sleep(0.3)
        ran = slow_lm.forward_calls["n"] - start
        assert ran < LONG / 2, ran  # the long request stopped, it did not run in the background
    finally:
        srv.shutdown()


def test_a_cancelled_row_leaves_its_batch_the_others_go_on(slow_lm):
    srv = serve(slow_lm, max_tokens=LONG, batch_wait_ms=400)
    try:
        out = {}

        def keep() -> None:
            out["kept"] = post(srv, "/v1/completions", completion(LONG, "what is up"))

        t = threading.Thread(target=keep)
        t.start()
        abandon(srv, completion(LONG), after_s=1.0)  # same settings, same batch (400 ms wait), dropped mid-way
        t.join(60)
        stats = srv.app.state.steerlab.batcher.stats
        assert stats.max_rows == 2  # they ran as one batch
        status, _, reply = out["kept"]
        ref = slow_lm.complete(["what is up"], formatted=True, max_new_tokens=LONG)[0]
        assert status == 200 and reply["choices"][0]["text"] == slow_lm.tokenizer.decode(
            list(ref.token_ids), skip_special_tokens=True
        )
    finally:
        srv.shutdown()


def test_prompt_token_limit_and_deadline(slow_lm):
    srv = serve(slow_lm, max_tokens=LONG, max_prompt_tokens=10, request_timeout_s=0.6)
    try:
        # the character tokenizer: one token per character, plus <bos>
        ok, _, _ = post(srv, "/v1/completions", completion(1, "x" * 9))
        status, _, reply = post(srv, "/v1/completions", completion(1, "x" * 10))
        assert ok == 200 and status == 400
        assert reply["error"]["code"] == "context_length_exceeded" and "at most 10" in reply["error"]["message"]
        status, _, reply = post(srv, "/v1/completions", completion(1, list(range(4, 15))))  # 11 token ids
        assert status == 400 and reply["error"]["code"] == "context_length_exceeded"
        elapsed, status, reply = timed(srv, completion(LONG, "hi"))
        assert status == 503 and reply["error"]["code"] == "timeout" and elapsed < LONG * STEP_S / 2
        elapsed, status, _ = timed(srv, completion(2, "hi"))  # the timed-out rows left the model
        assert status == 200 and elapsed < LONG * STEP_S / 2
    finally:
        srv.shutdown()


def test_slow_clients_are_cut_off():
    lm = tiny_lm("llama")
    srv = serve(lm, read_timeout_s=0.5)
    try:
        with socket.create_connection(srv.server_address, timeout=10) as s:  # half a request line
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            t = time.perf_counter()
            assert s.recv(100) == b""  # the server closed the connection
            assert time.perf_counter() - t < 5
        with socket.create_connection(srv.server_address, timeout=10) as s:  # headers, a tenth of the body
            s.sendall(
                b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"model":'
            )
            reply = b""
            while chunk := s.recv(4096):  # until the server closes or the whole reply is there
                reply += chunk
                if b"}}" in reply:
                    break
            assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive within 0.5 s" in reply
        assert post(srv, "/v1/completions", completion(2))[0] == 200  # a normal client is unaffected
    finally:
        srv.shutdown()


def test_browsers_cannot_reach_a_keyless_server():
    lm = tiny_lm("llama")
    srv = serve(lm)
    keyed = serve(lm, api_key="k")
    try:
        body = json.dumps(completion(2)).encode()
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            status, _, reply = post(srv, "/v1/completions", body, {"Content-Type": ctype})
            assert status == 415 and reply["error"]["code"] == "unsupported_media_type", ctype
        req = urllib.request.Request(url(srv, "/v1/completions"), data=body, method="POST")
        req.remove_header("Content-type")  # urllib adds a form type; send none at all
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert e.value.code == 415
        assert post(srv, "/v1/completions", body, {"Content-Type": "application/json; charset=utf-8"})[0] == 200
        # DNS rebinding: the page's own name in Host; a cross-site fetch: the page's Origin
        for headers in ({"Host": "evil.example:8000"}, {"Origin": "http://evil.example"}, {"Origin": "null"}):
            status, _, reply = post(srv, "/v1/completions", body, headers)
            assert status == 403 and reply["error"]["code"] == "forbidden_host", headers
        for headers in ({"Host": "localhost:1"}, {"Host": "[::1]:8000"}, {"Origin": "http://127.0.0.1:3000"}):
            assert post(srv, "/v1/completions", body, headers)[0] == 200, headers
        # with a key, the key is the protection: any Host is answered
        status, _, _ = post(keyed, "/v1/completions", body, {"Host": "my.server.lan", "Authorization": "Bearer k"})
        assert status == 200
    finally:
        srv.shutdown()
        keyed.shutdown()


def test_queue_limits_say_when_to_retry_and_when_not(slow_lm):
    srv = serve(slow_lm, max_tokens=LONG, max_batch=2, max_n=2, max_queue=1, batch_wait_ms=0)
    try:
        threads = [threading.Thread(target=post, args=(srv, "/v1/completions", completion(40))) for _ in range(2)]
        threads[0].start()
        time.sleep(0.3)  # the first runs
        threads[1].start()
        time.sleep(0.3)  # the second waits: the queue is full
        status, headers, reply = post(srv, "/v1/completions", completion(2))
        assert status == 429 and int(headers["Retry-After"]) >= 1, reply
        for t in threads:
            t.join(60)
        status, headers, reply = post(srv, "/v1/completions", completion(2, ["a", "b"]))  # 2 rows > max_queue 1
        assert status == 400 and reply["error"]["code"] == "request_too_large" and "Retry-After" not in headers
    finally:
        srv.shutdown()


def test_shutdown_ends_requests_in_flight_cleanly(slow_lm, caplog, monkeypatch):
    from steerlab.serve import runner

    monkeypatch.setattr(runner, "GRACE_S", 0.5)  # the long request (3.3 s) outlives the grace period
    srv = serve(slow_lm, max_tokens=LONG, request_timeout_s=None)
    out = {}

    def long_request() -> None:
        out["reply"] = post(srv, "/v1/completions", completion(LONG))

    t = threading.Thread(target=long_request)
    with caplog.at_level(logging.INFO):
        t.start()
        time.sleep(0.3)
        start = time.perf_counter()
        srv.shutdown()
        took = time.perf_counter() - start
        t.join(10)
    assert took < min(runner.SHUTDOWN_S, LONG * STEP_S - 0.3)
    status, _, reply = out["reply"]  # ended with a clear error, not a dropped connection
    assert status == 503 and reply["error"]["code"] == "shutting_down"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_steer_fields_are_strict_and_layers_unique():
    from steerlab.serve.protocol import CompletionRequest, RequestError, SteerSpec, parse_request

    base = {"model": "m", "prompt": "x"}
    for steer, message in [
        ({"vector": "v", "strength": "0.1"}, "valid number"),
        ({"vector": "v", "strength": True}, "valid number"),
        ({"vector": "v", "strength": 0.1, "layers": [1, 1]}, "[1] listed more than once"),
        ({"vector": "v", "strength": 0.1, "layers": [True]}, "valid integer"),
    ]:
        with pytest.raises(RequestError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_request(CompletionRequest, {**base, "steer": steer})
    assert SteerSpec.model_validate({"vector": "v", "strength": 1}).strength == 1.0  # an int is a number
    with pytest.raises(RequestError, match="valid boolean"):
        parse_request(CompletionRequest, {**base, "stream": 1})


def test_a_base_model_chat_reply_cut_by_max_tokens_loses_the_next_turn():
    lm = tiny_lm("llama")
    service = Service(lm, {}, ServeConfig(model_names=("m",)))
    enc = service.encode

    def reply(text: str, reason: str = "length") -> str:
        ids = tuple(enc(text)[1:])  # the generated part: no <bos>
        return service.chat_text(Completion(text.strip(), reason, 3, len(ids), ids))

    assert lm.stop_strings() == ("\nUser:", "\nAssistant:")
    assert reply("Sure, here.\nUser") == "Sure, here."
    assert reply("Sure, here.\nAssi") == "Sure, here."
    assert reply("Sure, here.\nUs") == "Sure, here."
    assert reply("Sure, here.\nU") == "Sure, here.\nU"  # one letter is not yet a turn
    assert reply("Users are\nwelcome") == "Users are\nwelcome"
    assert reply("Done.\nUser", "stop") == "Done.\nUser"  # only replies cut by max_tokens
