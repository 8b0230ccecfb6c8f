"""`steerlab run` / `steerlab demo`: the CLI passes its arguments through to steerlab.experiments."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_fixtures import runner  # noqa: F401 (fixtures)

import steerlab.experiments as experiments
from steerlab.cli import app


@pytest.fixture
def calls(monkeypatch) -> list[tuple]:
    seen: list[tuple] = []

    def fake_run(config_path, run_dir=None, overrides=None, **executor):
        seen.append(("run", config_path, run_dir, overrides, executor))
        return Path("runs/x/report.md")

    def fake_demo(run_dir=None, overrides=None, **executor):
        seen.append(("demo", run_dir, overrides, executor))
        return Path("runs/demo/report.md")

    monkeypatch.setattr(experiments, "run_experiment", fake_run)
    monkeypatch.setattr(experiments, "demo", fake_demo)
    return seen


def test_run_passes_config_run_dir_and_overrides(runner, calls, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kind: refusal_study\n")
    res = runner.invoke(
        app,
        [
            "run",
            str(cfg),
            "--run-dir",
            str(tmp_path / "r"),
            "--set",
            "seed=3",
            "--set",
            "conditions.strengths=[0.1, 0.2]",
        ],
    )
    assert res.exit_code == 0, res.output
    local = {"executor": "local", "address": None, "actors": None}
    assert calls == [("run", cfg, tmp_path / "r", ["seed=3", "conditions.strengths=[0.1, 0.2]"], local)]
    assert "runs/x/report.md" in res.stdout


def test_run_rejects_repeated_override(runner, calls, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kind: refusal_study\n")
    res = runner.invoke(app, ["run", str(cfg), "--set", "seed=1", "--set", "seed=2"])
    assert res.exit_code == 1 and res.stderr.strip() == "error: --set: 'seed' given twice"
    assert calls == []


def test_demo_passes_run_dir(runner, calls, tmp_path):
    res = runner.invoke(
        app, ["demo", "--run-dir", str(tmp_path), "--executor", "ray", "--address", "auto", "--actors", "2"]
    )
    assert res.exit_code == 0, res.output
    assert calls == [("demo", tmp_path, [], {"executor": "ray", "address": "auto", "actors": 2})]


def test_invalid_config_is_one_line(runner, tmp_path):
    """The real runner: a config error (named field path) is one line, before any model loads."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kind: refusal_study\nname: t\nno_such_field: 1\n")
    res = runner.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 1, res.output
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("error: ") and "no_such_field" in line and "Traceback" not in res.output
