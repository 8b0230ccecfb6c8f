"""Bad input: exit code ≠ 0, exactly one line ``error: ...`` on stderr, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cli_fixtures import other_dir, pairs_file, runner, tiny_dir, vec_file, write_jsonl  # noqa: F401 (fixtures)

from steerlab.cli import app


def assert_one_line_error(res, *fragments: str, code: int = 1) -> None:
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == code, (res.exit_code, res.output)
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit)
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_pairs_file(runner, tiny_dir, tmp_path):
    res = runner.invoke(
        app, ["extract", str(tiny_dir), "--pairs", str(tmp_path / "nope.jsonl"), "--out", "x.safetensors"]
    )
    assert_one_line_error(res, "nope.jsonl", "no such file")


def test_malformed_jsonl_line_names_its_number(runner, tiny_dir, pairs_file, tmp_path):
    lines = pairs_file.read_text().splitlines()
    lines.insert(2, '{"id": "broken", "prompt": ')
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    res = runner.invoke(app, ["extract", str(tiny_dir), "--pairs", str(bad), "--out", str(tmp_path / "v.safetensors")])
    assert_one_line_error(res, "bad.jsonl:3:", "malformed JSON")
    assert not (tmp_path / "v.safetensors").exists()


def test_prompt_file_missing_column(runner, tiny_dir, tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a"}, {"text": "b"}])
    res = runner.invoke(app, ["generate", str(tiny_dir), "--prompts", str(prompts)])
    assert_one_line_error(res, "p.jsonl:2:", "'prompt'")


@pytest.mark.parametrize("layers", ["3", "1,7", "-4"])
def test_extract_layer_out_of_range(runner, tiny_dir, pairs_file, tmp_path, layers):
    res = runner.invoke(
        app,
        [
            "extract",
            str(tiny_dir),
            "--pairs",
            str(pairs_file),
            "--layers",
            layers,
            "--out",
            str(tmp_path / "v.safetensors"),
        ],
    )
    assert_one_line_error(res, "out of range", "3 layers")


def test_generate_layer_out_of_range(runner, tiny_dir, vec_file):
    res = runner.invoke(app, ["generate", str(tiny_dir), "--prompt", "hi", "--vector", f"{vec_file}:1", "--layer", "5"])
    assert_one_line_error(res, "layer 5 is out of range")


def test_vector_file_layer_not_in_file(runner, tiny_dir, vec_file):
    res = runner.invoke(app, ["generate", str(tiny_dir), "--prompt", "hi", "--vector", f"{vec_file}:0"])
    assert_one_line_error(res, "no vector for layer 0")


def test_vector_file_with_several_layers_needs_a_choice(runner, tiny_dir, vec_file):
    res = runner.invoke(app, ["generate", str(tiny_dir), "--prompt", "hi", "--vector", str(vec_file)])
    assert_one_line_error(res, "layers 1, 2", ":LAYER")


def test_vector_model_mismatch(runner, other_dir, vec_file):
    res = runner.invoke(app, ["generate", str(other_dir), "--prompt", "hi", "--vector", f"{vec_file}:1"])
    assert_one_line_error(res, "--allow-other-model")
    ok = runner.invoke(
        app,
        [
            "generate",
            str(other_dir),
            "--prompt",
            "hi",
            "--vector",
            f"{vec_file}:1",
            "--allow-other-model",
            "--max-new-tokens",
            "2",
            "--json",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert set(json.loads(ok.stdout)) == {"prompt", "unsteered", "steered"}


def test_missing_vector_file(runner, tiny_dir, tmp_path):
    res = runner.invoke(app, ["generate", str(tiny_dir), "--prompt", "hi", "--vector", str(tmp_path / "v.safetensors")])
    assert_one_line_error(res, "no such vector file")


def test_not_a_vector_file(runner, tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors at all")
    res = runner.invoke(app, ["export-gguf", str(junk), "--out", str(tmp_path / "j.gguf")])
    assert_one_line_error(res, "junk.safetensors")


@pytest.mark.parametrize("spec", ["/nonexistent/model/dir", "./no-such-model"])
def test_unknown_model_path(runner, spec):
    res = runner.invoke(app, ["info", spec])
    assert_one_line_error(res, "no such file or directory")


def test_folder_without_config(runner, tmp_path):
    res = runner.invoke(app, ["info", str(tmp_path)])
    assert_one_line_error(res, "config.json")


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--layers", "four", "--layers"),
        ("--selector", "middle", "--selector"),
    ],
)
def test_bad_extract_options(runner, tiny_dir, option, value, fragment):
    res = runner.invoke(app, ["extract", str(tiny_dir), option, value, "--out", "v.safetensors"])
    assert_one_line_error(res, fragment, value)


def test_strength_count_mismatch(runner, tiny_dir, vec_file):
    """Several vectors take one strength or one each; a sweep of strengths takes a single vector."""
    res = runner.invoke(
        app,
        [
            "generate",
            str(tiny_dir),
            "--prompt",
            "hi",
            "--vector",
            f"{vec_file}:1",
            "--vector",
            f"{vec_file}:2",
            "--strength",
            "1",
            "--strength",
            "2",
            "--strength",
            "3",
        ],
    )
    assert_one_line_error(res, "--strength given 3 times for 2 vectors")


def test_no_prompt(runner, tiny_dir):
    assert_one_line_error(runner.invoke(app, ["generate", str(tiny_dir)]), "no prompt")


def test_run_missing_config_and_bad_override(runner, tmp_path):
    assert_one_line_error(runner.invoke(app, ["run", str(tmp_path / "c.yaml")]), "no such config file")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kind: demo\n")
    assert_one_line_error(runner.invoke(app, ["run", str(cfg), "--set", "novalue"]), "key.path=value")


def test_usage_error_is_one_line_exit_2(runner):
    res = runner.invoke(app, ["extract", "--no-such-option"])
    assert_one_line_error(res, "--no-such-option", code=2)
    res = runner.invoke(app, ["extract", "m", "--method", "magic", "--out", "v.safetensors"])
    assert_one_line_error(res, "magic", code=2)


def test_real_entry_point_prints_one_line(tmp_path):
    """Through ``main()`` in a fresh interpreter, as a user's shell runs it."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from steerlab.cli import main; main()",
            "export-gguf",
            str(tmp_path / "missing.safetensors"),
            "--out",
            str(tmp_path / "x.gguf"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.safetensors'}: no such vector file"]
    assert proc.stdout == ""
