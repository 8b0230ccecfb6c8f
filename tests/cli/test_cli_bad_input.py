"""Bad input found by trying steerlab as a new user would: each ends in one ``error:`` line.

Issue 7, item 5: non-finite or overflowing strengths, vector files with NaN/inf values or broken
metadata, a config that is not UTF-8, devices this machine lacks, an out-of-range recorded layer,
an unreachable hub id, writing over a directory.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
from cli_fixtures import pairs_file, runner, tiny_dir, vec_file  # noqa: F401 (fixtures)
from safetensors.torch import save_file
from test_cli_errors import assert_one_line_error

from steerlab.cli import app
from steerlab.vectors.io import load_vectors


def _rewrite(src: Path, dst: Path, *, tensors=None, metadata=None) -> Path:
    """A copy of a vector file with its tensors and/or header metadata replaced."""
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
        ts = {k: f.get_tensor(k) for k in f.keys()}
    if tensors is not None:
        ts = tensors(ts)
    if metadata is not None:
        meta = metadata(meta)
    save_file(ts, str(dst), metadata=meta)
    return dst


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_strength(runner, tiny_dir, vec_file, value):
    res = runner.invoke(
        app, ["generate", str(tiny_dir), "--prompt", "hi", "--vector", f"{vec_file}:1", "--strength", value]
    )
    assert_one_line_error(res, "--strength must be a finite number")


def test_strength_so_large_the_activations_overflow(runner, tiny_dir, vec_file):
    res = runner.invoke(
        app,
        [
            "generate",
            str(tiny_dir),
            "--prompt",
            "hi",
            "--vector",
            f"{vec_file}:1",
            "--strength",
            "1e38",
            "--max-new-tokens",
            "2",
        ],
    )
    assert_one_line_error(res, "overflowed", "strength is far too large")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_vector_file_with_non_finite_values_is_refused_everywhere(runner, tiny_dir, vec_file, tmp_path, bad):
    def poison(ts):
        t = ts["resid_post.1"].clone()
        t[3] = bad
        return {**ts, "resid_post.1": t}

    broken = _rewrite(vec_file, tmp_path / "nan.safetensors", tensors=poison)
    for args in (
        ["generate", str(tiny_dir), "--prompt", "hi", "--vector", f"{broken}:1"],
        ["export-gguf", str(broken), "--out", str(tmp_path / "x.gguf")],
    ):
        assert_one_line_error(runner.invoke(app, args), "nan.safetensors", "NaN or infinite")
    assert not (tmp_path / "x.gguf").exists()


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda m: {**m, "vectors": "[{not json"}, "not valid JSON"),
        (lambda m: {k: v for k, v in m.items() if k != "vectors"}, "no 'vectors' metadata"),
        (
            lambda m: {
                **m,
                "vectors": json.dumps(json.loads(m["vectors"]) + [dict(json.loads(m["vectors"])[0], layer=0)]),
            },
            "no such tensor",
        ),
        (lambda m: {**m, "vectors": json.dumps([{"layer": 1}])}, "metadata lacks"),
        (lambda m: {**m, "vectors": json.dumps([dict(json.loads(m["vectors"])[0], site="middle")])}, "unknown site"),
        (lambda m: {**m, "vectors": "{}"}, "non-empty list"),
    ],
)
def test_vector_file_with_malformed_metadata(runner, vec_file, tmp_path, edit, fragment):
    broken = _rewrite(vec_file, tmp_path / "meta.safetensors", metadata=edit)
    res = runner.invoke(app, ["export-gguf", str(broken), "--out", str(tmp_path / "x.gguf")])
    assert_one_line_error(res, "meta.safetensors", fragment)


def test_export_of_a_vector_whose_recorded_layer_is_outside_its_model(runner, vec_file, tmp_path):
    def move(meta):
        recs = json.loads(meta["vectors"])
        recs[0]["layer"] = recs[0]["num_layers"] + 2
        return {**meta, "vectors": json.dumps(recs)}

    def rename(ts):  # keep tensor and metadata consistent so only the layer is wrong
        return {f"resid_post.{5 if k.endswith('.1') else k.split('.')[1]}": v for k, v in ts.items()}

    broken = _rewrite(vec_file, tmp_path / "far.safetensors", tensors=rename, metadata=move)
    res = runner.invoke(app, ["export-gguf", str(broken), "--out", str(tmp_path / "x.gguf")])
    assert_one_line_error(res, "far.safetensors", "layer 5 is outside its model's 3 layers")


def test_config_that_is_not_utf8(runner, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes("kind: refusal_study\nname: r\xe9sum\xe9\n".encode("latin-1"))
    assert_one_line_error(runner.invoke(app, ["run", str(cfg)]), "c.yaml", "not UTF-8")


@pytest.mark.parametrize(
    ("device", "fragment"),
    [
        ("cuda", "no CUDA GPU"),
        ("cuda:1", "no CUDA GPU"),
        ("junk", "unknown device 'junk'"),
        ("mps", "MPS"),
    ],
)
def test_devices_this_machine_lacks(runner, tiny_dir, device, fragment):
    if torch.cuda.is_available() or (device == "mps" and torch.backends.mps.is_available()):
        pytest.skip("this machine has the device")
    assert_one_line_error(runner.invoke(app, ["info", str(tiny_dir), "--device", device]), fragment)


def test_a_bare_hub_id_offline_fails_fast(runner, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty Hugging Face cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    assert_one_line_error(runner.invoke(app, ["info", "someone/some-model"]), "someone/some-model", "HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert_one_line_error(
        runner.invoke(app, ["info", "someone/some-model"]), "cannot be reached", "./someone/some-model"
    )
    assert time.monotonic() - start < 15  # was ~26 s of hub retries per attempt


def test_export_gguf_onto_a_directory_names_it_and_leaves_nothing(runner, vec_file, tmp_path):
    out = tmp_path / "outdir"
    out.mkdir()
    assert_one_line_error(
        runner.invoke(app, ["export-gguf", str(vec_file), "--out", str(out)]), str(out), "is a directory"
    )
    assert list(out.iterdir()) == [] and not list(tmp_path.glob(".*.tmp"))


def test_extract_onto_a_directory_names_the_users_path(runner, tiny_dir, pairs_file, tmp_path):
    out = tmp_path / "v.safetensors"
    out.mkdir()
    res = runner.invoke(app, ["extract", str(tiny_dir), "--pairs", str(pairs_file), "--layers", "1", "--out", str(out)])
    assert_one_line_error(res, str(out), "is a directory")
    assert ".tmp" not in res.stderr and not list(tmp_path.glob(".*.tmp"))


def test_written_files_follow_the_umask(runner, vec_file, tmp_path):
    old = os.umask(0o022)
    try:
        res = runner.invoke(app, ["export-gguf", str(vec_file), "--out", str(tmp_path / "v.gguf")])
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "v.gguf").stat().st_mode & 0o777 == 0o644
    assert vec_file.stat().st_mode & 0o777 == 0o644  # written by `steerlab extract` under the test's umask


def test_extract_and_load_give_the_same_shape(runner, vec_file, tiny_dir, pairs_file):
    import steerlab as sl

    loaded = load_vectors(vec_file)
    assert loaded[1].layer == 1 and loaded[2].layer == 2  # vecs[layer] after a reload, as after extract
    lm = sl.load_model(str(tiny_dir), device="cpu", dtype="float32")  # the vec_file fixture's dtype
    pairs = [json.loads(x) for x in pairs_file.read_text().splitlines()]
    made = sl.extract(
        lm,
        [sl.Example(p["prompt"], p["refusal"]) for p in pairs],
        [sl.Example(p["prompt"], p["compliance"]) for p in pairs],
        layers=[1, 2],
    )
    assert type(made) is type(loaded) and list(made) == list(loaded)
    assert torch.allclose(made[1].vector, loaded[1].vector)


def test_generate_strength_sweep_is_one_column_per_strength_with_a_meaningful_default(
    runner, tiny_dir, vec_file, tmp_path
):
    from steerlab.cli._app import default_strength

    (v1,) = load_vectors(vec_file).at(1)
    assert v1.meta.normalization == "none" and default_strength(v1) == 1.0
    res = runner.invoke(
        app,
        [
            "generate",
            str(tiny_dir),
            "--prompt",
            "tell me a story",
            "--vector",
            f"{vec_file}:1",
            "--strength",
            "0.5",
            "--strength",
            "4",
            "--max-new-tokens",
            "4",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert set(row) == {"prompt", "unsteered", "steered (v.safetensors@1 ×0.5)", "steered (v.safetensors@1 ×4)"}
    one = runner.invoke(
        app,
        [
            "generate",
            str(tiny_dir),
            "--prompt",
            "tell me a story",
            "--vector",
            f"{vec_file}:1",
            "--strength",
            "4",
            "--max-new-tokens",
            "4",
            "--json",
            "--no-baseline",
        ],
    )
    assert json.loads(one.stdout)["steered"] == row["steered (v.safetensors@1 ×4)"]  # the sweep = one run each
