"""`steerlab extract` → vector file → `steerlab generate`, checked against plain-PyTorch references."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_fixtures import pairs_file, runner, tiny_dir, vec_file, write_jsonl  # noqa: F401 (fixtures)
from cli_reference import greedy, layer_outputs, load, prompt_text

from steerlab.cli import app
from steerlab.vectors.io import load_vectors


def _last_token_acts(model, tok, pairs: Path, side: str) -> list[list[torch.Tensor]]:
    """Per example, per layer, the last token's block output (completion appended after a space)."""
    out = []
    for line in pairs.read_text().splitlines():
        row = json.loads(line)
        ids = tok(prompt_text(row["prompt"]))["input_ids"] + tok(" " + row[side], add_special_tokens=False)["input_ids"]
        out.append([h[-1] for h in layer_outputs(model, ids)])
    return out


def test_extract_mean_diff_equals_by_hand(vec_file, tiny_dir, pairs_file):
    model, tok = load(str(tiny_dir))
    pos, neg = (_last_token_acts(model, tok, pairs_file, side) for side in ("refusal", "compliance"))
    vecs = {v.layer: v for v in load_vectors(vec_file).values()}
    assert sorted(vecs) == [1, 2]
    for layer, v in vecs.items():
        ref = torch.stack([p[layer] for p in pos]).mean(0) - torch.stack([n[layer] for n in neg]).mean(0)
        torch.testing.assert_close(v.vector, ref, atol=1e-5, rtol=1e-4)
        assert v.meta.method == "mean_diff" and v.meta.normalization == "none" and v.meta.site == "resid_post"


def test_extract_prints_norm_table(runner, tiny_dir, pairs_file, tmp_path):
    out = tmp_path / "n.safetensors"
    res = runner.invoke(
        app,
        [
            "extract",
            str(tiny_dir),
            "--dtype",
            "float32",
            "--pairs",
            str(pairs_file),
            "--layers",
            "2",
            "--normalization",
            "activation_norm",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    (v,) = load_vectors(out).values()
    model, tok = load(str(tiny_dir))
    acts = _last_token_acts(model, tok, pairs_file, "refusal") + _last_token_acts(model, tok, pairs_file, "compliance")
    ref_act_norm = sum(float(a[2].norm()) for a in acts) / len(acts)
    assert v.norm == pytest.approx(ref_act_norm, rel=1e-4)
    assert f"{v.meta.raw_norm:.3f}" in res.stdout and f"{ref_act_norm:.3f}" in res.stdout


def test_extract_from_two_prompt_sets_mean_selector(runner, tiny_dir, tmp_path):
    pos = write_jsonl(tmp_path / "pos.jsonl", [{"text": "sorry I cannot"}, {"text": "I will not help you"}])
    neg = write_jsonl(tmp_path / "neg.jsonl", [{"text": "sure here is"}, {"text": "yes I can help"}, {"text": "good"}])
    out = tmp_path / "ps.safetensors"
    res = runner.invoke(
        app,
        [
            "extract",
            str(tiny_dir),
            "--dtype",
            "float32",
            "--positive",
            str(pos),
            "--negative",
            str(neg),
            "--text-column",
            "text",
            "--layers",
            "0",
            "--selector",
            "mean",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    model, tok = load(str(tiny_dir))

    def mean_act(path: Path) -> torch.Tensor:
        rows = [json.loads(line)["text"] for line in path.read_text().splitlines()]
        return torch.stack([layer_outputs(model, tok(prompt_text(r))["input_ids"])[0].mean(0) for r in rows]).mean(0)

    (v,) = load_vectors(out).values()
    torch.testing.assert_close(v.vector, mean_act(pos) - mean_act(neg), atol=1e-5, rtol=1e-4)


PROMPTS = ["tell me a story", "what is the capital of france"]


def _generate_json(runner, args: list[str]) -> list[dict]:
    # float32: the references are float32 greedy decodes, and a tiny random model's top two logits
    # can be 0.001 apart, so a bf16 decode matches them only by luck
    res = runner.invoke(app, ["generate", *args, "--dtype", "float32", "--json", "--max-new-tokens", "6"])
    assert res.exit_code == 0, res.output
    return [json.loads(line) for line in res.stdout.splitlines()]


def test_generate_with_vector_matches_hooked_greedy(runner, tiny_dir, vec_file):
    args = [
        str(tiny_dir),
        *[a for p in PROMPTS for a in ("--prompt", p)],
        "--vector",
        f"{vec_file}:1",
        "--strength",
        "4",
    ]
    rows = _generate_json(runner, args)
    model, tok = load(str(tiny_dir))
    v1 = {v.layer: v for v in load_vectors(vec_file).values()}[1].vector
    assert [r["prompt"] for r in rows] == PROMPTS
    for r in rows:
        assert r["unsteered"] == greedy(model, tok, r["prompt"], 6)
        assert r["steered"] == greedy(model, tok, r["prompt"], 6, [(1, 4 * v1)])


def test_generate_two_vectors_layer_override_no_baseline(runner, tiny_dir, vec_file):
    args = [
        str(tiny_dir),
        "--prompt",
        PROMPTS[0],
        "--vector",
        f"{vec_file}:1",
        "--vector",
        f"{vec_file}:2",
        "--strength",
        "3",
        "--strength",
        "-2",
        "--layer",
        "0",
        "--no-baseline",
    ]
    (row,) = _generate_json(runner, args)
    assert "unsteered" not in row
    model, tok = load(str(tiny_dir))
    vecs = {v.layer: v.vector for v in load_vectors(vec_file).values()}
    assert row["steered"] == greedy(model, tok, PROMPTS[0], 6, [(0, 3 * vecs[1] - 2 * vecs[2])])


def test_generate_table_and_prompts_file(runner, tiny_dir, vec_file, tmp_path):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    res = runner.invoke(
        app,
        ["generate", str(tiny_dir), "--prompts", str(prompts), "--vector", f"{vec_file}:2", "--max-new-tokens", "3"],
    )
    assert res.exit_code == 0, res.output
    assert "unsteered" in res.stdout and "steered (v.safetensors@2" in res.stdout
    assert all(p.split()[0] in res.stdout for p in PROMPTS)
