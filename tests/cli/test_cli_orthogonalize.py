"""`steerlab orthogonalize`: the written folder loads with transformers alone and equals hook ablation."""

from __future__ import annotations

import json
import re

import pytest
import torch
from cli_fixtures import other_dir, pairs_file, runner, tiny_dir  # noqa: F401 (fixtures)

from steerlab.cli import app
from steerlab.interventions.orthogonalize import PROVENANCE_FILE, weight_equivalent_ablation
from steerlab.vectors.io import load_vectors


@pytest.fixture
def vec_file(runner, tiny_dir, pairs_file, tmp_path):
    path = tmp_path / "v.safetensors"
    res = runner.invoke(
        app, ["extract", str(tiny_dir), "--pairs", str(pairs_file), "--layers", "1,2", "--out", str(path)]
    )
    assert res.exit_code == 0, res.output
    return path


def test_orthogonalize_writes_a_plain_model_equal_to_hook_ablation(runner, tiny_dir, vec_file, tmp_path):
    import transformers

    out = tmp_path / "edited"
    res = runner.invoke(app, ["orthogonalize", str(tiny_dir), f"{vec_file}:1", "--out", str(out), "--dtype", "float32"])
    assert res.exit_code == 0, res.output
    diff = float(re.search(r"vs hook ablation on 2 prompts: ([0-9.e+-]+)", res.output).group(1))
    assert diff <= 1e-4 and "edited 7 weights" in res.output
    original = transformers.AutoModelForCausalLM.from_pretrained(tiny_dir)
    edited = transformers.AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([[1, 5, 9, 14, 20, 7]])
    with torch.no_grad(), weight_equivalent_ablation(original, load_vectors(vec_file)[1]):
        hooked = original(input_ids=ids).logits
    with torch.no_grad():
        assert float((edited(input_ids=ids).logits - hooked).abs().max()) <= 1e-4
    prov = json.loads((out / PROVENANCE_FILE).read_text())
    assert prov["source_spec"] == str(tiny_dir) and prov["direction_file"].endswith("@1")


def test_orthogonalize_bad_inputs_are_one_line_errors(runner, tiny_dir, other_dir, vec_file, tmp_path):
    cases = [
        (
            ["orthogonalize", str(tiny_dir), str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "o1")],
            "no such vector file",
        ),
        (["orthogonalize", str(tiny_dir), str(vec_file), "--out", str(tmp_path / "o2")], "pick one with"),
        (["orthogonalize", str(other_dir), f"{vec_file}:1", "--out", str(tmp_path / "o3")], "allow-other-model"),
    ]
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    cases.append((["orthogonalize", str(tiny_dir), f"{vec_file}:1", "--out", str(full)], "not empty"))
    for args, message in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 1, (args, res.output)
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert lines[-1].startswith("error: ") and message in lines[-1] and "Traceback" not in res.output
    assert (full / "keep.txt").read_text() == "x"
    res = runner.invoke(
        app,
        [
            "orthogonalize",
            str(tiny_dir),
            f"{vec_file}:1",
            "--out",
            str(full),
            "--force",
            "--check",
            "0",
            "--norm-preserving",
        ],
    )
    assert res.exit_code == 0, res.output
    assert not (full / "keep.txt").exists() and (full / "config.json").exists()
