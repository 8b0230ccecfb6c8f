"""The OpenAI-compatible client against steerlab's own server on 127.0.0.1."""

from __future__ import annotations

import json
import urllib.request

import pytest

from conftest import tiny_lm
from steerlab.errors import BackendError
from steerlab.models.api import OpenAICompatible, parse_api_spec
from steerlab.models.backend import TextGenerator, user
from steerlab.models.serve import serve


@pytest.fixture(scope="module")
def server():
    lm = tiny_lm("llama")
    srv = serve(lm)
    yield lm, f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def test_api_replies_equal_local_generation(server, tmp_path):
    lm, url = server
    client = OpenAICompatible(url, "tiny", api_key_env="STEERLAB_TEST_NO_KEY", cache_dir=tmp_path)
    assert isinstance(client, TextGenerator)
    convs = [user("hello"), user("what is this?", system="Be brief.")]
    assert client.generate(convs, max_new_tokens=6) == lm.generate(convs, max_new_tokens=6)


def test_server_rejects_bad_requests_and_client_reports_failures(server, tmp_path):
    _, url = server
    req = urllib.request.Request(
        url + "/chat/completions",
        data=json.dumps({"messages": []}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 400
    with pytest.raises(BackendError, match="HTTP 404"):
        OpenAICompatible(url.replace("/v1", "/nope"), "tiny", retries=0, cache_dir=tmp_path).generate([user("x")])
    with pytest.raises(BackendError, match="1 of 1 requests failed.*connection error"):
        OpenAICompatible("http://127.0.0.1:9/v1", "tiny", retries=0, timeout=2, cache_dir=tmp_path).generate(
            [user("x")]
        )


def test_parse_api_spec():
    b = parse_api_spec("openai:gpt-4o-mini@http://127.0.0.1:8000/v1")
    assert (b.model, b.base_url) == ("gpt-4o-mini", "http://127.0.0.1:8000/v1")
    assert parse_api_spec("openai:gpt-4o-mini").base_url == "https://api.openai.com/v1"
    assert parse_api_spec("default") is None
