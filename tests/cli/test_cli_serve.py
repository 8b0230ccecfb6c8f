"""``steerlab serve``: each bad input ends in one ``error:`` line (the serving itself is tested in
tests/serve and, as a real process, in tests/models/test_models_api_client.py)."""

from __future__ import annotations

import socket

import pytest
from cli_fixtures import other_dir, pairs_file, runner, tiny_dir, vec_file  # noqa: F401 (fixtures)
from test_cli_errors import assert_one_line_error

from steerlab.cli import app
from steerlab.cli.serve import is_loopback, parse_presets


def serve_args(model, *extra):
    return ["serve", str(model), "--port", "0", "--device", "cpu", *extra]


def test_network_address_needs_a_key(runner, tiny_dir, monkeypatch):
    monkeypatch.delenv("STEERLAB_API_KEY", raising=False)
    res = runner.invoke(app, serve_args(tiny_dir, "--host", "0.0.0.0"))
    assert_one_line_error(res, "--host 0.0.0.0", "without a key", "STEERLAB_API_KEY")


def test_limits_must_be_consistent(runner, tiny_dir):
    assert_one_line_error(
        runner.invoke(app, serve_args(tiny_dir, "--max-n", "20", "--max-batch", "8")),
        "--max-n (20) must not exceed --max-batch (8)",
    )
    assert_one_line_error(
        runner.invoke(app, serve_args(tiny_dir, "--max-tokens", "10", "--default-max-tokens", "20")),
        "--default-max-tokens (20)",
    )


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("v.safetensors", "expected NAME=FILE"),
        ("=v.safetensors", "expected NAME=FILE"),
        ("a=x.safetensors,a=y.safetensors", None),
    ],
)
def test_vector_spec_syntax(runner, tiny_dir, spec, fragment):
    if fragment is None:  # the same name twice
        a, b = spec.split(",")
        res = runner.invoke(app, serve_args(tiny_dir, "--vector", a, "--vector", b))
        assert_one_line_error(res, "the name 'a' is given twice")
    else:
        assert_one_line_error(runner.invoke(app, serve_args(tiny_dir, "--vector", spec)), fragment)


def test_vector_files_are_checked_against_the_model(runner, tiny_dir, other_dir, vec_file, tmp_path):
    res = runner.invoke(app, serve_args(tiny_dir, "--vector", f"r={tmp_path / 'missing.safetensors'}"))
    assert_one_line_error(res, "missing.safetensors", "no such vector file")
    res = runner.invoke(app, serve_args(tiny_dir, "--vector", f"r={vec_file}"))  # two layers in the file
    assert_one_line_error(res, "holds vectors for layers 1, 2", "pick one")
    res = runner.invoke(app, serve_args(other_dir, "--vector", f"r={vec_file}:1"))  # made for another model
    assert_one_line_error(res, "--allow-other-model")


def test_port_in_use(runner, tiny_dir, vec_file):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        res = runner.invoke(
            app, ["serve", str(tiny_dir), "--port", str(port), "--device", "cpu", "--vector", f"r={vec_file}:1"]
        )
    assert_one_line_error(res, f"cannot listen on 127.0.0.1:{port}")


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("127.8.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.org")


@pytest.mark.parametrize(
    ("preset", "fragment"),
    [
        ("refusal", "expected NAME=VECTOR@STRENGTH"),
        ("r=r", "expected NAME=VECTOR@STRENGTH"),
        ("r=other@0.1", "no vector named 'other'"),
        ("r=r@lots", "the strength 'lots' is not a number"),
        ("r=r@nan", "finite number"),
    ],
)
def test_preset_syntax(runner, tiny_dir, vec_file, preset, fragment):
    res = runner.invoke(app, serve_args(tiny_dir, "--vector", f"r={vec_file}:1", "--preset", preset))
    assert_one_line_error(res, fragment)


def test_parse_presets():
    assert parse_presets(["a=r@0.1", "b=r@-2", "c=r@ablate"], ["r"]) == {
        "a": {"vector": "r", "strength": 0.1},
        "b": {"vector": "r", "strength": -2.0},
        "c": {"vector": "r", "kind": "ablate"},
    }
