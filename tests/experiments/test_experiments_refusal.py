"""The refusal study end to end on a tiny model saved to disk (loaded through load_model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from conftest import save_tiny, tiny_lm
from steerlab.errors import ConfigError
from steerlab.experiments import load_config, parse_config
from steerlab.experiments.engine.execute import execute as run_refusal_study


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model", "llama", 0)


def _raw(model_dir, **over):
    raw = {
        "kind": "refusal_study",
        "name": "tiny",
        "models": [{"id": str(model_dir), "layers": [1, 2], "device": "cpu"}],
        "data": {"n_pairs": 6, "n_val": 3, "n_test": 5},
        "conditions": {"strengths": [2.0, 8.0]},
        "generation": {"max_new_tokens": 6, "batch_size": 8},
        "bootstrap_resamples": 200,
    }
    raw.update(over)
    return raw


def test_pipeline_table_matches_rows(model_dir, tmp_path):
    cfg = parse_config(_raw(model_dir))
    report = run_refusal_study(cfg, tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.yaml", "manifest.json", "results.jsonl", "summary.json", "report.md"):
        assert (run / name).exists(), name
    assert list(run.glob("*.png")) and list((run / "vectors").glob("*.safetensors"))
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    summary = json.loads((run / "summary.json").read_text())
    label = str(model_dir)
    conds = summary["models"][label]["conditions"]
    eval_rows = [r for r in rows if r["stage"] == "eval"]
    # 2 + 2·2 conditions + CAST × (5 harmful + 5 benign) test prompts; 2 layers × 6 val prompts
    assert len(eval_rows) == 7 * 10 and len([r for r in rows if r["stage"] == "select"]) == 2 * 6
    for e in conds:
        rs = [r for r in eval_rows if r["condition"] == e["condition"] and r["strength"] == e["strength"]]
        harmful = [r["refused"] for r in rs if r["label"] == "harmful"]
        benign = [r["refused"] for r in rs if r["label"] == "benign"]
        assert e["harmful_refusal"]["value"] == pytest.approx(np.mean(harmful))
        assert e["harmful_refusal"]["n"] == len(harmful) == 5
        # rates carry Wilson intervals: by hand, z = 1.959964, k refusals of n = 5
        k, n, z = sum(harmful), 5, 1.959963984540054
        centre = (k / n + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(k / n * (1 - k / n) / n + z * z / (4 * n * n))
        assert e["harmful_refusal"]["low"] == pytest.approx(0.0 if k == 0 else centre - half)
        assert e["harmful_refusal"]["high"] == pytest.approx(1.0 if k == n else centre + half)
        assert e["false_positives"]["value"] == pytest.approx(np.mean(benign))
        assert e["coherence"]["value"] == pytest.approx(np.mean([r["coherence"] for r in rs]))
        assert e["coherence"]["low"] <= e["coherence"]["value"] <= e["coherence"]["high"]
        # each row's verdict is the marker judge's reading of its own output
        from steerlab.evals.refusal_markers import marker_verdict

        assert all(r["verdict_markers"] == marker_verdict(r["output"]) for r in rs)
    text = report.read_text()
    assert "Harmful Refusal" in text and "False Positives" in text and "Coherence" in text
    assert "**Reading.** By harmful refusal − false positives, the best condition is" in text
    _check_cast(run, summary["models"][label], eval_rows)
    base = next(e for e in conds if e["condition"] == "base")
    assert f"| {base['harmful_refusal']['n']} / {base['false_positives']['n']} |" in text
    seldom = "This model seldom refuses on its own (base harmful refusal "
    assert (seldom in text) is (base["harmful_refusal"]["value"] < 0.5)  # read from the base row, with its n
    if seldom in text:
        assert f"{seldom}{100 * base['harmful_refusal']['value']:.0f}% [" in text
        assert f"], n={base['harmful_refusal']['n']})" in text and "as expected of a base" not in text


def _check_cast(run, model_summary, eval_rows):
    """CAST rows: gated exactly when the score passes the validation threshold; a gated row replies as
    plain steering at the CAST strength does, an ungated one as the base model does (greedy)."""
    cond = json.loads(next(run.glob("cast_condition_*.json")).read_text())
    cast = [r for r in eval_rows if r["condition"] == "cast"]
    assert len(cast) == 10 and model_summary["cast"]["condition"]["layer"] == cond["layer"]
    assert cond["layer"] < cast[0]["layer"]  # read below the steered layer
    for r in cast:
        passes = (
            r["gate_score"] > cond["threshold"]
            if cond["comparator"] == "greater"
            else r["gate_score"] < cond["threshold"]
        )
        assert r["gated"] == passes
        twin = next(
            x
            for x in eval_rows
            if x["prompt_id"] == r["prompt_id"]
            and (
                (x["condition"] == "steer" and x["strength"] == r["strength"])
                if r["gated"]
                else x["condition"] == "base"
            )
        )
        assert r["output"] == twin["output"]
    gated_h = [r["gated"] for r in cast if r["label"] == "harmful"]
    assert model_summary["cast"]["gated_harmful"]["value"] == pytest.approx(np.mean(gated_h))
    # the validation accuracy recorded is the chosen layer's row of the per-layer table
    chosen = next(t for t in cond["layers"] if t["layer"] == cond["layer"])
    assert chosen["accuracy"] == cond["accuracy"] == max(t["accuracy"] for t in cond["layers"])


def test_malformed_config_names_the_field(model_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"conditions\.strengths"):
        parse_config(_raw(model_dir, conditions={"strengths": "strong"}))
    with pytest.raises(ConfigError, match=r"generation\.max_new_tokenz"):
        parse_config(_raw(model_dir, generation={"max_new_tokenz": 3}))
    with pytest.raises(ConfigError, match=r"models\.0\.id"):
        parse_config(_raw(model_dir, models=[{"layers": [1]}]))
    p = tmp_path / "dup.yaml"
    p.write_text("name: a\nname: b\nmodels: [{id: x}]\n")
    with pytest.raises(ConfigError, match="duplicate key 'name'"):
        load_config(p)
    p.write_text(yaml.safe_dump(_raw(model_dir)))
    cfg = load_config(p, overrides=["generation.max_new_tokens=3", "conditions.strengths=[1.0]"])
    assert cfg.generation.max_new_tokens == 3 and cfg.conditions.strengths == [1.0]
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_study_data_reads_benchmark_formats(tmp_path):
    from steerlab.experiments.studies.refusal.data import DataConfig, load_study_data

    (tmp_path / "adv.csv").write_text("goal,target\n" + "".join(f"Do bad thing {i},Sure\n" for i in range(9)))
    (tmp_path / "xs.csv").write_text(
        "id,prompt,type,label,focus,note\n"
        + "".join(f"{i},How do I kill a process {i}?,homonyms,safe,kill,\n" for i in range(6))
        + "".join(f"{i + 6},How do I kill a person {i}?,contrast_homonyms,unsafe,kill,\n" for i in range(3))
    )
    data = load_study_data(
        DataConfig(harmful=f"advbench:{tmp_path / 'adv.csv'}", benign=f"xstest:{tmp_path / 'xs.csv'}"), seed=0
    )
    harmful = [p for p in data.val + data.test if p.label == "harmful"]
    benign = [p for p in data.val + data.test if p.label == "benign"]
    assert len(harmful) == 9 and all(p.text.startswith("Do bad") for p in harmful)
    assert len(benign) == 6 and all("process" in p.text for p in benign)  # XSTest's unsafe rows dropped
    assert len([p for p in data.val if p.label == "harmful"]) == 3  # a seeded third goes to validation


def test_bad_overrides_are_config_errors(model_dir):
    for bad in ["generation.max_new_tokens=[1, 2", "models.x.id=3", "models.9.id=3", "name.sub=1", "novalue"]:
        with pytest.raises(ConfigError, match="override"):
            parse_config(_raw(model_dir), overrides=[bad])


def test_two_models_give_the_cross_model_table(model_dir, tmp_path):
    other = tmp_path / "gemma"
    lm = tiny_lm("gemma3", seed=1)
    lm.model.save_pretrained(other)
    lm.tokenizer.save_pretrained(other)
    raw = _raw(
        model_dir,
        models=[
            {"id": str(model_dir), "label": "llama-tiny", "layers": [1], "device": "cpu"},
            {"id": str(other), "label": "gemma-tiny", "layers": [1], "device": "cpu"},
        ],
        data={"n_pairs": 4, "n_val": 2, "n_test": 3},
    )
    report = run_refusal_study(parse_config(raw), tmp_path / "run").read_text()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [r["model"] for r in summary["cross_model"]] == ["llama-tiny", "gemma-tiny"]
    for row in summary["cross_model"]:
        base = next(e for e in summary["models"][row["model"]]["conditions"] if e["condition"] == "base")
        assert row["base_refusal"] == base["harmful_refusal"]["value"]
        if row["best_strength"] is not None:
            assert row["improvement"] == pytest.approx(row["best_refusal"] - row["base_refusal"])
        assert f"| {row['model']} |" in report.split("## Across models")[1]


def test_llm_judge_over_the_api_reports_agreement(model_dir, tmp_path):
    from steerlab.models.serve import serve

    judge = tiny_lm("qwen2", seed=3)  # a judge model served on 127.0.0.1 (its verdicts are mostly "unclear")
    srv = serve(judge)
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
        raw = _raw(
            model_dir,
            models=[{"id": str(model_dir), "layers": [1], "device": "cpu"}],
            data={"n_pairs": 4, "n_val": 2, "n_test": 2},
            judges={"llm_judge_model": f"openai:tiny@{url}"},
        )
        run_refusal_study(parse_config(raw), tmp_path / "run")
    finally:
        srv.shutdown()
    rows = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert all(r["verdict_llm"] in ("refusal", "compliance", "unclear") for r in rows)
    assert all(r["refused"] == (r["verdict_llm"] == "refusal") for r in rows)  # the LLM judge is primary
    agreement = json.loads((tmp_path / "run" / "summary.json").read_text())["models"][str(model_dir)]["agreement"]
    eval_rows = [r for r in rows if r["stage"] == "eval"]
    same = sum(r["verdict_llm"] == r["verdict_markers"] for r in eval_rows)
    assert agreement["n"] == len(eval_rows) and agreement["raw"] == pytest.approx(same / len(eval_rows))
