"""The example kind of docs/engine.md, run as the doc shows it: registered from outside steerlab,
run by the engine; and a results.jsonl row of another row version is refused with one line."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest

from conftest import tiny_lm
from steerlab.errors import InputError
from steerlab.experiments import known_kinds, parse_config
from steerlab.experiments.engine.execute import execute
from steerlab.experiments.engine.registry import get_kind

DOC = Path(__file__).resolve().parents[2] / "docs" / "engine.md"


def _doc_module() -> types.ModuleType:
    """The first ``python`` block of docs/engine.md, executed as a module of its own."""
    if "steerlab_doc_my_study" in sys.modules:
        return sys.modules["steerlab_doc_my_study"]
    (code,) = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)[:1]
    mod = types.ModuleType("steerlab_doc_my_study")
    sys.modules[mod.__name__] = mod  # pydantic resolves the annotations through the module
    exec(compile(code, str(DOC), "exec"), mod.__dict__)
    return mod


@pytest.fixture(scope="module")
def doc_kind():
    return _doc_module()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    lm = tiny_lm("mistral")
    path = tmp_path_factory.mktemp("tiny") / "m"
    lm.model.save_pretrained(path)
    lm.tokenizer.save_pretrained(path)
    return lm, path


def _cfg(path: Path):
    return parse_config(
        {
            "kind": "my_study",
            "name": "mine",
            "models": [{"id": str(path), "device": "cpu"}],
            "prompts": ["hi", "a longer prompt", "x"],
            "generation": {"max_new_tokens": 4, "temperature": 0.7},
        }
    )


def test_the_doc_kind_registered_outside_steerlab_runs_on_the_engine(doc_kind, model_path, tmp_path):
    lm, path = model_path
    assert "my_study" in known_kinds() and get_kind("my_study") is doc_kind.MyStudy
    assert [s.name for s in doc_kind.MyStudy.stages] == ["answer"]
    report = execute(_cfg(path), tmp_path / "run")
    assert report.read_text() == "# mine\n\n3 rows\n"
    rows = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["prompt"] for r in rows) == ["a longer prompt", "hi", "x"]
    assert [r["prompt"] for r in rows] == ["x", "hi", "a longer prompt"]  # one batch, ordered by the stage's length
    # each row is what the model gives that prompt alone with the cell's own seed
    for r in rows:
        assert r["output"] == lm.complete([r["prompt"]], seed=[r["seed"]], temperature=0.7, max_new_tokens=4)[0].text
    assert execute(_cfg(path), tmp_path / "run") == report  # resume: every row is read back, none rerun
    assert (tmp_path / "run" / "results.jsonl").read_text().count("\n") == 3


def test_a_row_of_another_row_version_is_refused_with_one_line(doc_kind, model_path, tmp_path):
    _, path = model_path
    run = tmp_path / "run"
    execute(_cfg(path), run)
    lines = (run / "results.jsonl").read_text().splitlines()
    old = json.loads(lines[0])
    old["version"] = 0  # as an older steerlab wrote it
    (run / "results.jsonl").write_text("\n".join([json.dumps(old), *lines[1:]]) + "\n")
    with pytest.raises(InputError) as err:
        execute(_cfg(path), run)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"row {old['key']!r} has row schema version 0" in msg
    assert "my_study answer rows of version 1" in msg and "new --run-dir" in msg
