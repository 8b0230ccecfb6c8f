"""The experiment engine: batching plan, run-directory rules, bad configs, re-rendering, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from conftest import save_tiny
from steerlab.errors import ConfigError, InputError
from steerlab.experiments import load_config, parse_config, render_report
from steerlab.experiments.engine.execute import execute
from steerlab.experiments.engine.records import Cell, InterventionSpec, cell_seed
from steerlab.experiments.engine.run import plan_batches


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
        "generation": {"max_new_tokens": 5, "batch_size": 4},
        "bootstrap_resamples": 100,
    }
    raw.update(over)
    return raw


def test_plan_groups_by_model_sorts_by_length_and_ignores_what_is_done():
    cells = [Cell(key=f"{m}{i}", model=m) for i in range(5) for m in ("a", "b")]
    length = {c.key: (7 * i) % 5 for i, c in enumerate(cells)}
    batches = plan_batches(cells, 2, lambda c: length[c.key])
    assert [{c.model for c in b} for b in batches] == [{"a"}] * 3 + [{"b"}] * 3  # one model per batch
    for model in ("a", "b"):
        flat = [c for b in batches for c in b if c.model == model]
        assert [length[c.key] for c in flat] == sorted(length[c.key] for c in flat)
    assert [len(b) for b in batches] == [2, 2, 1, 2, 2, 1]
    # the plan is a function of the cell list alone (so a resume reruns a batch with the same batch-mates)
    assert plan_batches(cells, 2, lambda c: length[c.key]) == batches


def test_cell_seeds_depend_only_on_run_seed_and_key():
    assert cell_seed(0, "k") == cell_seed(0, "k") != cell_seed(1, "k")
    assert cell_seed(0, "k") != cell_seed(0, "k2") and 0 <= cell_seed(7, "x") < 2**31


def test_intervention_spec_is_validated():
    with pytest.raises(ValueError, match="needs a vector"):
        InterventionSpec(kind="add", strength=1.0)
    with pytest.raises(ValueError, match="finite"):
        InterventionSpec(kind="add", vector="v", strength=float("nan"))
    with pytest.raises(ValueError, match="no strength"):
        InterventionSpec(kind="ablate", vector="v", strength=2.0)


def test_non_finite_numbers_in_a_config_are_refused(model_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"conditions\.strengths\.0"):
        parse_config(_raw(model_dir, conditions={"strengths": [float("nan")]}))
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(_raw(model_dir)).replace("- 4.0", "- .inf"))
    with pytest.raises(ConfigError, match=r"conditions\.strengths\.0"):
        load_config(p)
    with pytest.raises(ConfigError, match="generation.temperature"):
        parse_config(_raw(model_dir, generation={"temperature": float("inf")}))


def test_config_that_is_not_utf8_is_one_clear_error(tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes("kind: refusal_study\nname: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(p)


def test_config_without_kind_names_the_known_kinds(model_dir):
    raw = _raw(model_dir)
    del raw["kind"]
    with pytest.raises(ConfigError, match="kind: missing; known kinds: .*refusal_study"):
        parse_config(raw)


def test_failed_start_leaves_the_directory_free_for_a_fixed_config(model_dir, tmp_path):
    run = tmp_path / "run"
    bad = parse_config(_raw(model_dir, models=[{"id": str(model_dir), "layers": [9], "device": "cpu"}]))
    with pytest.raises(ConfigError, match="layer 9 is out of range"):
        execute(bad, run)
    missing = parse_config(_raw(model_dir, data={"harmful": str(tmp_path / "nope.jsonl")}))
    with pytest.raises(InputError, match="nope.jsonl"):
        execute(missing, run)
    assert (run / "report.md") == execute(parse_config(_raw(model_dir)), run)  # the fixed config runs


def test_duplicate_rows_on_disk_are_counted_once(model_dir, tmp_path):
    run = tmp_path / "run"
    cfg = parse_config(_raw(model_dir))
    execute(cfg, run)
    summary = json.loads((run / "summary.json").read_text())
    lines = (run / "results.jsonl").read_text().splitlines()
    (run / "results.jsonl").write_text("\n".join(lines + lines) + "\n")  # as two racing runners once left it
    execute(cfg, run)
    assert json.loads((run / "summary.json").read_text()) == summary
    base = summary["models"][str(model_dir)]["conditions"][0]
    assert base["harmful_refusal"]["n"] == 3 and base["false_positives"]["n"] == 3


def test_report_is_rerendered_from_summary_and_config_alone(model_dir, tmp_path):
    run = tmp_path / "run"
    report = execute(parse_config(_raw(model_dir)), run)
    text = report.read_text()
    (run / "results.jsonl").unlink()
    report.unlink()
    for png in run.glob("*.png"):
        png.unlink()
    assert render_report(run).read_text() == text
    assert list(run.glob("*.png"))
    with pytest.raises(InputError, match="no config.yaml"):
        render_report(tmp_path)


_HOLDER = textwrap.dedent("""
    import sys, time
    from steerlab.experiments.engine.store import RunStore
    store = RunStore(sys.argv[1])
    store.lock()
    print("locked", flush=True)
    time.sleep(60)
""")


def test_the_run_directory_lock_names_its_holder_and_dies_with_it(tmp_path):
    from steerlab.experiments.engine.store import RunStore

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=rf"another steerlab run is using this directory \(pid {holder.pid} on "):
            RunStore(run).lock()
    finally:
        holder.kill()
        holder.wait()
    store = RunStore(run)
    store.lock()  # the lock died with its holder
    with pytest.raises(InputError, match=rf"\(pid {os.getpid()} on "):
        RunStore(run).lock()  # a second store in the same process is refused too
    store.unlock()
    RunStore(run).lock()


def test_a_second_runner_on_the_same_directory_is_refused(model_dir, tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=r"another steerlab run is using this directory \(pid"):
            execute(parse_config(_raw(model_dir)), run)
        assert not (run / "results.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    execute(parse_config(_raw(model_dir)), run)  # the lock dies with its holder


def test_run_files_follow_the_umask(model_dir, tmp_path):
    run = tmp_path / "run"
    old = os.umask(0o022)
    try:
        execute(parse_config(_raw(model_dir)), run)
    finally:
        os.umask(old)
    for name in ("config.yaml", "summary.json", "report.md", "results.jsonl"):
        assert (run / name).stat().st_mode & 0o777 == 0o644, name
    vecs = list((run / "vectors").glob("*.safetensors"))  # steering vectors and CAST's condition directions
    assert vecs and all(v.stat().st_mode & 0o777 == 0o644 for v in vecs)
