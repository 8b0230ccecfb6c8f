"""Issue 19: no tracebacks where one line is promised, interrupts that say how to resume, help
that reads as written. The run tests drive the real entry point (``main()``) in a subprocess,
as a user's shell does, on a tiny random model."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from cli_fixtures import runner  # noqa: F401 (fixtures)
from test_cli_errors import assert_one_line_error

from conftest import save_tiny
from steerlab.cli import app


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model", "llama", 0)


def _config(path: Path, model_dir: Path, strengths: list[float] | None = None) -> Path:
    raw = {
        "kind": "refusal_study",
        "name": "tiny",
        "models": [{"id": str(model_dir), "layers": [1], "device": "cpu"}],
        "data": {"n_pairs": 4, "n_val": 2, "n_test": 3},
        "conditions": {"strengths": strengths or [4.0]},
        "generation": {"max_new_tokens": 5, "batch_size": 2},
        "bootstrap_resamples": 100,
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def _steerlab(*args: str, driver: str = "from steerlab.cli import main; main()", **kw) -> list[str]:
    return [sys.executable, "-c", driver, *args]


def _rows(run: Path) -> dict[str, dict]:
    """The whole rows on disk (a line cut by a crash is not a row)."""
    lines = (run / "results.jsonl").read_text().split("\n")
    rows = []
    for ln in lines:
        try:
            rows.append(json.loads(ln))
        except json.JSONDecodeError:
            assert ln is lines[-1], "only the last line may be cut"
    return {r["key"]: r for r in rows}


def _check_stopped(line: str, reason: str, run: Path, args: list[str], reference: dict[str, dict]) -> None:
    """``line`` is the one line of a stopped run: ``reason``, the cells of the stage under way that
    are on disk out of that stage's cells, and the exact command that resumes it."""
    m = re.fullmatch(
        rf"error: {reason}: (\d+) of (\d+) cells of refusal_study (\w+) saved in {re.escape(str(run))}; "
        rf"rerun the same command to resume: steerlab {re.escape(' '.join(args))}",
        line,
    )
    assert m, line
    saved, total, stage = int(m[1]), int(m[2]), m[3]
    assert saved == sum(f"|{stage}|" in k for k in _rows(run)), line
    assert total == sum(f"|{stage}|" in k for k in reference), line


@pytest.fixture(scope="module")
def reference(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The rows of an uninterrupted run of the tiny config."""
    root = tmp_path_factory.mktemp("reference")
    cfg = _config(root / "c.yaml", model_dir)
    proc = subprocess.run(
        _steerlab("run", str(cfg), "--run-dir", str(root / "run")), capture_output=True, text=True, env=_env()
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return _rows(root / "run")


def _error_line(proc: subprocess.CompletedProcess[str] | subprocess.Popen[str], stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


# ---------------------------------------------------------------------------- interrupts


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_says_what_is_saved_and_how_to_resume(model_dir, tmp_path, reference, signum, code):
    cfg = _config(tmp_path / "c.yaml", model_dir)
    run = tmp_path / "run"
    args = ["run", str(cfg), "--run-dir", str(run)]
    proc = subprocess.Popen(
        _steerlab(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path
    )
    results = run / "results.jsonl"
    deadline = time.monotonic() + 120
    while not (results.exists() and len(results.read_text().splitlines()) >= 6):  # into the eval stage
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr[-2000:]
    _check_stopped(_error_line(proc, stderr), rf"interrupted \({signal.Signals(signum).name}\)", run, args, reference)
    # rerunning the same command resumes, and gives the rows an uninterrupted run gives
    again = subprocess.run(_steerlab(*args), capture_output=True, text=True, env=_env(), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _rows(run) == reference


# ---------------------------------------------------------------------------- a full disk

# The results writer fails like a full disk on its third append, after writing half of it.
_FULL_DISK = textwrap.dedent("""
    import errno, json, os, sys
    from steerlab.experiments.engine import store
    from steerlab.cli import main

    real, calls = store.append_jsonl, []

    def append_jsonl(path, rows):
        calls.append(path)
        if len(calls) < 3:
            return real(path, rows)
        payload = "".join(json.dumps(r) + "\\n" for r in rows)
        with open(path, "a", encoding="utf-8") as f:
            f.write(payload[: len(payload) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    store.append_jsonl = append_jsonl
    sys.argv = ["steerlab", *sys.argv[1:]]
    main()
""")


def test_a_full_disk_is_one_line_and_the_run_resumes_after(model_dir, tmp_path, reference):
    cfg = _config(tmp_path / "c.yaml", model_dir)
    run = tmp_path / "run"
    args = ["run", str(cfg), "--run-dir", str(run)]
    proc = subprocess.run(_steerlab(*args, driver=_FULL_DISK), capture_output=True, text=True, env=_env())
    assert proc.returncode == 1
    _check_stopped(
        _error_line(proc, proc.stderr), rf"no space left on device \({re.escape(str(run))}\)", run, args, reference
    )
    assert not (run / "results.jsonl").read_text().endswith("\n")  # the half-written line is there
    again = subprocess.run(_steerlab(*args), capture_output=True, text=True, env=_env())
    assert again.returncode == 0, again.stderr[-2000:]
    assert _rows(run) == reference  # the cut line was dropped and its cells rerun


# ---------------------------------------------------------------------------- a read-only run directory


def _read_only(directory: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """``command`` with ``directory`` mounted read-only (a private mount namespace, so nothing
    outside the command sees it); skips where user namespaces are not allowed."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a directory read-only")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("user namespaces are not allowed here (unshare -rm failed)")
    script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, str(directory), *command], capture_output=True, text=True, env=_env()
    )


def test_a_read_only_run_directory_is_one_line(model_dir, tmp_path, runner):
    cfg = _config(tmp_path / "c.yaml", model_dir)
    run = tmp_path / "run"
    assert runner.invoke(app, ["run", str(cfg), "--run-dir", str(run)]).exit_code == 0
    # the finished run, rerun on a read-only file system; and a new run directory inside it
    for target in (run, run / "new"):
        proc = _read_only(run, *_steerlab("run", str(cfg), "--run-dir", str(target)))
        assert proc.returncode == 1, proc.stderr[-3000:]
        line = _error_line(proc, proc.stderr)
        assert line == (
            f"error: {target}: cannot write the run directory (Read-only file system); choose a writable --run-dir"
        )


# ---------------------------------------------------------------------------- bad input


def test_a_text_file_named_gguf_is_one_line(runner, tmp_path):
    fake = tmp_path / "x.gguf"
    fake.write_text("hello\n")
    assert_one_line_error(runner.invoke(app, ["info", str(fake)]), "x.gguf: not a GGUF file", "magic bytes")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(b"GGUF\x03\x00\x00\x00")  # the magic and a version, then nothing
    assert_one_line_error(runner.invoke(app, ["info", str(cut)]), "cut.gguf: cannot read this GGUF file")


def test_a_gguf_without_accelerate_is_one_line_naming_the_install(runner, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "accelerate" else real(name, *a))
    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF\x03\x00\x00\x00")
    assert_one_line_error(runner.invoke(app, ["info", str(model)]), "m.gguf: loading a GGUF file needs accelerate")
    assert "pip install accelerate" in runner.invoke(app, ["info", str(model)]).output


def test_a_strength_beyond_the_dtype_is_refused_before_any_work(runner, model_dir, tmp_path):
    run = tmp_path / "run"
    bad = _config(tmp_path / "bad.yaml", model_dir, strengths=[1e40])
    res = runner.invoke(app, ["run", str(bad), "--run-dir", str(run)])
    import torch

    largest = f"{float(torch.finfo(torch.bfloat16).max):.3g}"  # no dtype in the config: auto, at most bf16
    assert_one_line_error(res, "conditions.strengths.0: 1e+40 is outside the range of bfloat16", largest)
    assert not run.exists()  # refused at load: no directory, no vectors
    fixed = _config(tmp_path / "fixed.yaml", model_dir)
    assert runner.invoke(app, ["run", str(fixed), "--run-dir", str(run)]).exit_code == 0


# ---------------------------------------------------------------------------- help


def _commands() -> list[str]:
    import typer

    return sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def _want(annotation: object, param: object) -> str:
    """The type column a parameter should show, from its Python annotation alone: ``PATH``,
    ``TEXT``, ``INTEGER`` (``INTEGER RANGE`` with bounds), choices joined by ``|``; nothing for a
    flag; a repeatable option (``list[X]``) shows X."""
    import enum
    import types
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = args[0]
    if typing.get_origin(annotation) is list:
        annotation = typing.get_args(annotation)[0]
    if annotation is bool:
        return ""
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "|".join(str(m.value) for m in annotation)
    names = {Path: "PATH", str: "TEXT", int: "INTEGER", float: "FLOAT"}
    ranged = getattr(param, "min", None) is not None or getattr(param, "max", None) is not None
    return names[annotation] + (" RANGE" if ranged else "")  # type: ignore[index]


@pytest.mark.parametrize("command", _commands())
def test_help_types_follow_the_annotations(runner, command):
    """No Python annotation (``<bool>``, ``<list[str]>``) in the type column: each option shows
    the type :func:`_want` derives from the command's signature, flags none."""
    import typing

    import typer

    click_cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    hints = typing.get_type_hints(click_cmd.callback)
    res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250"}, terminal_width=250)
    assert res.exit_code == 0, res.output
    assert not re.search(r"<(bool|str|int|float|path|list\[)", res.output), res.output
    lines = res.output.splitlines()
    for param in click_cmd.params:
        if param.param_type_name != "option":
            continue
        opt = param.opts[0]
        row = next(ln for ln in lines if re.match(rf"│\s+(\*\s+)?{re.escape(opt)}(\s|,)", ln))
        rest = row.split(opt, 1)[1].strip()
        want = _want(hints[param.name], param)
        if want:
            assert rest.startswith(want + " ") or rest == want, (row, want)
        else:
            assert not re.match(r"(TEXT|PATH|INTEGER|FLOAT|<)", rest), (row, "a flag shows no type")


def test_help_keeps_brackets_in_help_texts(runner):
    res = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "250"}, terminal_width=250)
    assert "pip install steerlab[ray])" in res.output, res.output
