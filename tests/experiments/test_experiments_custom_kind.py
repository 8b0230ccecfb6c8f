"""The example kind of docs/engine.md, registered from outside steerlab and run by the engine."""

from __future__ import annotations

import json
from typing import Literal

from conftest import tiny_lm
from pydantic import Field

from steerlab.experiments import known_kinds, parse_config
from steerlab.experiments.engine.config import ExperimentConfig, GenerationConfig
from steerlab.experiments.engine.run import execute
from steerlab.experiments.engine.registry import ExperimentKind, register_kind
from steerlab.experiments.engine.records import Cell, Row, Summary, make_key


class MyConfig(ExperimentConfig):
    kind: Literal["my_study"] = "my_study"
    generation: GenerationConfig = GenerationConfig()
    prompts: list[str] = Field(description="what to ask")


class MyCell(Cell):
    prompt: str


class MyRow(MyCell, Row):
    output: str


class MySummary(Summary):
    n_rows: int


@register_kind
class MyStudy(ExperimentKind[MyConfig, MyCell, MyRow, MySummary]):
    name = "my_study"
    Config, Row, Summary = MyConfig, MyRow, MySummary

    def flow(self, cfg, run):
        cells = [MyCell(key=make_key(m.name, p), model=m.name, seed=run.seed(m.name, p), prompt=p)
                 for m in cfg.models for p in cfg.prompts]
        rows = run.cells(cells)
        return MySummary(name=cfg.name, n_rows=len(rows))

    def run_batch(self, cfg, lm, cells, ctx):
        g = cfg.generation
        out = lm.complete([c.prompt for c in cells], seed=[c.seed for c in cells], temperature=g.temperature,
                          max_new_tokens=g.max_new_tokens, batch_size=len(cells))
        return [MyRow(**c.model_dump(), output=o.text) for c, o in zip(cells, out)]

    def report(self, cfg, summary, out_dir):
        path = out_dir / "report.md"
        path.write_text(f"# {cfg.name}\n\n{summary.n_rows} rows\n")
        return path


def test_a_kind_registered_outside_steerlab_runs_on_the_engine(tmp_path):
    lm = tiny_lm("mistral")
    lm.model.save_pretrained(tmp_path / "m")
    lm.tokenizer.save_pretrained(tmp_path / "m")
    assert "my_study" in known_kinds()
    cfg = parse_config({"kind": "my_study", "name": "mine", "models": [{"id": str(tmp_path / "m"), "device": "cpu"}],
                        "prompts": ["hi", "a longer prompt", "x"], "generation": {"max_new_tokens": 4, "temperature": 0.7}})
    report = execute(cfg, tmp_path / "run")
    assert report.read_text() == "# mine\n\n3 rows\n"
    rows = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["prompt"] for r in rows) == ["a longer prompt", "hi", "x"]
    # each row is what the model gives that prompt alone with the cell's own seed
    for r in rows:
        assert r["output"] == lm.complete([r["prompt"]], seed=[r["seed"]], temperature=0.7, max_new_tokens=4)[0].text
