"""Issue 19, the engine's side: which configs a run directory is bound to, strict rows read back,
damaged rows that name their file, line and repair, numbers beyond the model's dtype."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import save_tiny
from steerlab.errors import ConfigError, InputError
from steerlab.experiments import parse_config
from steerlab.experiments.engine.execute import execute


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model", "llama", 0)


def _raw(model_dir, **over):
    raw = {
        "kind": "refusal_study",
        "name": "tiny",
        "models": [{"id": str(model_dir), "layers": [1], "device": "cpu"}],
        "data": {"n_pairs": 4, "n_val": 2, "n_test": 3},
        "conditions": {"strengths": [4.0]},
        "generation": {"max_new_tokens": 4, "batch_size": 4},
        "bootstrap_resamples": 100,
    }
    raw.update(over)
    return raw


@pytest.fixture(scope="module")
def finished(model_dir, tmp_path_factory):
    """An uninterrupted run of the tiny config: (its directory, its rows by key, its lines)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    execute(parse_config(_raw(model_dir)), run)
    lines = (run / "results.jsonl").read_text().splitlines()
    return run, {json.loads(x)["key"]: json.loads(x) for x in lines}, lines


def _copy_rows(tmp_path, lines):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text("\n".join(lines) + "\n")
    return run


# ---------------------------------------------------------------------------- dtype range


@pytest.mark.parametrize(
    ("model", "value", "dtype"),
    [
        ({"device": "cpu", "dtype": "float32"}, 1e40, torch.float32),
        ({}, 3.395e38, torch.bfloat16),  # dtype auto counts as bfloat16 (max 3.39e38 < float32's)
        ({"device": "cpu", "dtype": "float16"}, 70000.0, torch.float16),
    ],
)
def test_a_number_beyond_the_models_dtype_is_refused_at_load(model_dir, model, value, dtype):
    largest = float(torch.finfo(dtype).max)
    assert abs(value) > largest
    models = [{"id": str(model_dir), "layers": [1], **model}]
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(ConfigError, match=rf"conditions\.strengths\.1: .* outside the range of {name} "):
        parse_config(_raw(model_dir, models=models, conditions={"strengths": [1.0, value]}))
    with pytest.raises(ConfigError, match=r"conditions\.strengths\.0: .* outside the range"):
        parse_config(_raw(model_dir, models=models, conditions={"strengths": [-value]}))
    # the largest finite value of the dtype itself is accepted
    parse_config(_raw(model_dir, models=models, conditions={"strengths": [largest]}))


# ---------------------------------------------------------------------------- binding


def test_a_config_that_failed_before_its_first_row_does_not_bind_the_directory(model_dir, tmp_path, finished):
    """A strength whose steered activations overflow fails at the first batch, after the vectors
    (made from other data here) are saved; the corrected config then runs in the same directory,
    makes its own vectors and writes the rows of a fresh run."""
    run = tmp_path / "run"
    bad = parse_config(_raw(model_dir, data={"n_pairs": 3, "n_val": 2, "n_test": 3}, conditions={"strengths": [1e38]}))
    with pytest.raises(InputError, match="overflowed"):
        execute(bad, run)
    assert list((run / "vectors").glob("*.safetensors")) and not (run / "results.jsonl").exists()
    execute(parse_config(_raw(model_dir)), run)
    fresh, rows, _ = finished
    assert {json.loads(x)["key"]: json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()} == rows
    vecs = sorted((run / "vectors").glob("*.safetensors"))  # the steering vector and CAST's condition direction
    assert [v.name for v in vecs] == sorted(v.name for v in (fresh / "vectors").glob("*.safetensors"))
    for vec in vecs:  # not the failed config's vectors
        assert vec.read_bytes() == (fresh / "vectors" / vec.name).read_bytes(), vec.name


def test_a_directory_with_rows_stays_bound(model_dir, tmp_path, finished):
    run = _copy_rows(tmp_path, finished[2][:3])
    (run / "config.yaml").write_text((finished[0] / "config.yaml").read_text())
    with pytest.raises(ConfigError, match="holds results of a different config"):
        execute(parse_config(_raw(model_dir, seed=5)), run)


def test_a_config_yaml_from_before_a_new_field_existed_still_resumes(model_dir, tmp_path, finished):
    """config.yaml written by an older steerlab lacks a field added since (with its default): the
    run is the same experiment, so it resumes (and config.yaml is rewritten in full); a changed
    value is still refused."""
    import shutil

    import yaml

    fresh, rows, lines = finished
    run = tmp_path / "run"
    shutil.copytree(fresh, run)  # rows and artifacts (the vectors the rows were made with)
    vectors = {v.name: v.stat().st_mtime_ns for v in (run / "vectors").glob("*.safetensors")}
    assert vectors
    old = yaml.safe_load((fresh / "config.yaml").read_text())
    assert old["data"]["text_column"] == "prompt"  # a field left at its default, as if added later
    del old["data"]["text_column"]
    (run / "config.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    execute(parse_config(_raw(model_dir)), run)
    assert (run / "config.yaml").read_text() == (fresh / "config.yaml").read_text()
    assert {json.loads(x)["key"]: json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()} == rows
    assert {v.name: v.stat().st_mtime_ns for v in (run / "vectors").glob("*.safetensors")} == vectors  # kept
    old["seed"] = 5
    (run / "config.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    with pytest.raises(ConfigError, match="holds results of a different config"):
        execute(parse_config(_raw(model_dir)), run)


# ---------------------------------------------------------------------------- damaged and edited rows


def test_a_hand_edited_bool_is_refused_with_file_line_and_repair(model_dir, tmp_path, finished):
    lines = list(finished[2])
    at = next(i for i, x in enumerate(lines) if '"refused": ' in x)
    row = json.loads(lines[at])
    row["refused"] = "yes"  # pydantic's lax mode would read this as True
    lines[at] = json.dumps(row)
    run = _copy_rows(tmp_path, lines)
    with pytest.raises(InputError) as e:
        execute(parse_config(_raw(model_dir)), run)
    msg = str(e.value)
    assert msg.startswith(f"{run / 'results.jsonl'}:{at + 1}: row {row['key']!r} is not a valid"), msg
    assert "refused: Input should be a valid boolean" in msg and "delete it (or fix it) and rerun" in msg
    assert "version" not in msg  # it is not blamed on another steerlab version


def test_a_row_cut_in_the_middle_names_its_line_and_the_repair(model_dir, tmp_path, finished):
    lines = list(finished[2])
    lines[5] = lines[5][:40]
    run = _copy_rows(tmp_path, lines)
    with pytest.raises(InputError) as e:
        execute(parse_config(_raw(model_dir)), run)
    msg = str(e.value)
    assert msg.startswith(f"{run / 'results.jsonl'}:6: malformed JSON line"), msg
    assert msg.endswith("delete it (or fix it) and rerun: its cell is run again"), msg
    # doing what it says repairs the run: the same rows as an uninterrupted run
    del lines[5]
    (run / "results.jsonl").write_text("\n".join(lines) + "\n")
    execute(parse_config(_raw(model_dir)), run)
    assert {json.loads(x)["key"]: json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()} == finished[
        1
    ]


def test_a_last_row_cut_and_saved_by_an_editor_is_dropped_on_resume(model_dir, tmp_path, finished):
    """An editor ends the cut line with a newline; the next append must not bury it mid-file."""
    lines = list(finished[2][:9])
    lines[-1] = lines[-1][:50]
    run = _copy_rows(tmp_path, lines)
    execute(parse_config(_raw(model_dir)), run)
    out = (run / "results.jsonl").read_text().splitlines()
    assert out[:8] == finished[2][:8]
    assert {json.loads(x)["key"]: json.loads(x) for x in out} == finished[1]
    assert len(out) == len(finished[2])
