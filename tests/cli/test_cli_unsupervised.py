"""steerlab melbo / power-iter: vectors from one prompt to a file, and one-line errors for bad input."""

from __future__ import annotations

import pytest
import torch
from cli_fixtures import runner, tiny_dir  # noqa: F401 (fixtures)
from test_cli_errors import assert_one_line_error

from steerlab.cli import app
from steerlab.vectors.io import load_vectors

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


PROMPT = ["--prompt", "what is the capital of france ?", "--prompt", "tell me a short story"]


def test_melbo_writes_named_vectors_with_provenance(runner, tiny_dir, tmp_path):
    out = tmp_path / "m.safetensors"
    res = runner.invoke(
        app,
        [
            "melbo",
            str(tiny_dir),
            "--out",
            str(out),
            *PROMPT,
            "--n-vectors",
            "3",
            "--steps",
            "3",
            "--radius",
            "2",
            "--source-layer",
            "0",
            "--target-layer",
            "2",
            "--orthogonal",
        ],
    )
    assert res.exit_code == 0, res.output
    vecs = load_vectors(out)
    assert list(vecs) == ["melbo.0", "melbo.1", "melbo.2"]
    v = vecs["melbo.2"]
    assert v.layer == 0 and v.site == "mlp_raw" and v.meta.method == "melbo" and abs(v.norm - 2) < 1e-4
    assert v.meta.extra["prompts"] == [PROMPT[1], PROMPT[3]] and v.meta.extra["orthogonal"] is True
    assert v.meta.extra["target_layer"] == 2 and v.meta.extra["steps"] == 3
    m = torch.stack([x.vector for x in vecs.values()]) / 2
    assert (m @ m.T - torch.eye(3)).abs().max() < 1e-5
    assert "objective" in res.stdout


def test_power_iter_writes_singular_vectors(runner, tiny_dir, tmp_path):
    out = tmp_path / "p.safetensors"
    res = runner.invoke(
        app,
        [
            "power-iter",
            str(tiny_dir),
            "--out",
            str(out),
            *PROMPT[:2],
            "--n-vectors",
            "2",
            "--iterations",
            "3",
            "--no-system",
        ],
    )
    assert res.exit_code == 0, res.output
    vecs = load_vectors(out)
    assert list(vecs) == ["power.0", "power.1"] and vecs["power.0"].meta.extra["system"] is None
    assert vecs["power.0"].meta.extra["singular_value"] >= vecs["power.1"].meta.extra["singular_value"]
    assert "near-degenerate" in res.stdout


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--positions", "first:2"], ["--positions", "last:K"]),
        (["--radius", "0"], ["--radius"]),
        (["--source-layer", "7"], ["source_layer 7", "out of range"]),
        (["--source-layer", "2", "--target-layer", "1"], ["after source_layer"]),
        (["--prompt", " "], ["--prompt", "empty"]),
        (["--optimizer", "sgd"], ["--optimizer"]),
    ],
)
def test_bad_melbo_options_are_one_line_errors(runner, tiny_dir, tmp_path, args, fragments):
    res = runner.invoke(app, ["melbo", str(tiny_dir), "--out", str(tmp_path / "m.safetensors"), "--steps", "1", *args])
    assert_one_line_error(res, *fragments)
    assert not (tmp_path / "m.safetensors").exists()


def test_bad_output_paths_fail_before_any_work(runner, tiny_dir, tmp_path):
    res = runner.invoke(app, ["power-iter", str(tiny_dir), "--out", str(tmp_path / "p.pt")])
    assert_one_line_error(res, ".safetensors")
    res = runner.invoke(app, ["melbo", "no/such/model", "--out", str(tmp_path / "nodir" / "m.safetensors")])
    assert_one_line_error(res, "no such directory")
    res = runner.invoke(
        app, ["power-iter", str(tiny_dir), "--out", str(tmp_path / "p.safetensors"), "--n-vectors", "33"]
    )
    assert_one_line_error(res, "--n-vectors 33", "hidden size")
