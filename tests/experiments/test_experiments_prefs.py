"""The seed-004 preference studies end to end on a tiny model saved to disk, and their pieces."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_lm
from steerlab.errors import ConfigError, InputError
from steerlab.experiments import parse_config
from steerlab.experiments.engine.execute import execute, render
from steerlab.experiments.studies.prefs.records import ChoiceRow, PrefCell
from steerlab.experiments.studies.prefs.revealed_config import PairwiseConfig
from steerlab.experiments.studies.prefs.revealed_summary import oriented_counts
from steerlab.experiments.studies.prefs.stages import run_pref_batch
from steerlab.models.backend import Completion


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny") / "model"
    lm = tiny_lm("llama")
    lm.model.save_pretrained(d)
    lm.tokenizer.save_pretrained(d)
    return d


def _raw(model_dir, kind, **over):
    raw = {
        "kind": kind,
        "models": [{"id": str(model_dir), "device": "cpu", "label": "tiny"}],
        "tasks": {"n_per_origin": 1, "origins": ["math", "bailbench"]},
        "completion": {"max_new_tokens": 4},
        "bootstrap_resamples": 100,
    }
    raw.update(over)
    return raw


def _rows(run):
    return [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]


def test_stated_summary_matches_rows_and_resumes(model_dir, tmp_path):
    from steerlab.stats import cross_seed_correlation

    raw = _raw(
        model_dir,
        "prefs_stated",
        rating={"templates": ["anchored_1_5", "percentile_1_100"], "seeds": 2, "max_new_tokens": 3, "temperature": 1.0},
        tasks={"n_per_origin": 2, "origins": ["math", "bailbench"]},
    )
    run = tmp_path / "run"
    report = execute(parse_config(raw), run)
    rows = _rows(run)
    assert {"config.yaml", "summary.json", "report.md"} <= {p.name for p in run.iterdir()}
    assert (run / "score_distributions.png").exists()
    summary = json.loads((run / "summary.json").read_text())
    rate = [r for r in rows if r["stage"] == "rate"]
    assert len([r for r in rows if r["stage"] == "complete"]) == 4
    assert len(rate) == 4 * 2 * 3  # 4 completions x 2 templates x (2 seeds + 1 distribution)
    for entry in summary["conditions"]:
        mine = [r for r in rate if r["template"] == entry["template"]]
        dist = [r for r in mine if r["mode"] == "dist"]
        sampled = [r for r in mine if r["mode"] == "sample"]
        assert entry["dist_expected"] == pytest.approx(np.mean([r["expected"] for r in dist]), abs=1e-5)
        for r in dist:  # expected rating and entropy are those of the stored distribution
            values = entry["values"]
            assert r["expected"] == pytest.approx(
                sum(p * v for p, v in zip(r["probs"], values)), abs=1e-3
            )  # probs rounded to 1e-6
            assert r["entropy"] == pytest.approx(-sum(p * math.log(p) for p in r["probs"] if p > 0), abs=1e-4)
        bad = sum(r["rating"] is None for r in sampled)
        assert sum(entry["unparseable"].values()) == bad and entry["n_answers"] == len(sampled)
        parsed = pd.DataFrame([{"item": r["item"], "seed": r["sample"], "value": r["rating"]} for r in sampled]).astype(
            {"value": float}
        )
        if parsed["value"].notna().sum() >= 4 and entry["seed_r"] is not None:
            assert entry["seed_r"] == pytest.approx(cross_seed_correlation(parsed, scale=None).mean, abs=1e-5)
    assert "## Per condition" in report.read_text()
    # resume: the same command does no new work; the report re-renders from summary + config alone
    execute(parse_config(raw), run)
    assert _rows(run) == rows
    text = report.read_text()
    (run / "report.md").unlink()
    assert render(run).read_text() == text


def test_sysprompt_grid_means_match_rows(model_dir, tmp_path):
    raw = _raw(model_dir, "prefs_sysprompt", rating={"templates": ["anchored_1_5"], "seeds": 1, "max_new_tokens": 3})
    run = tmp_path / "run"
    text = execute(parse_config(raw), run).read_text()
    rows = [r for r in _rows(run) if r["stage"] == "rate" and r["mode"] == "dist"]
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["grid"]) == 3 * 3 * 2  # personas x contexts x origins (one task each)
    for g in summary["grid"]:
        mine = [
            r["expected"]
            for r in rows
            if (r["persona"] or "none") == g["persona"]
            and (r["context"] or "none") == g["context"]
            and r["origin"] == g["origin"]
        ]
        assert g["rating"]["value"] == pytest.approx(np.mean(mine), abs=1e-5) and g["rating"]["n"] == len(mine)
    comps = [r for r in _rows(run) if r["stage"] == "complete"]
    love = [r for r in comps if r["persona"] == "love math"]
    assert all(r["messages"][0]["content"].startswith("Do not mention these instructions.") for r in love)
    assert all(r["messages"][0]["role"] == "user" for r in comps if r["persona"] == "none")
    assert "Context effect" in text and (run / "sysprompt_grid_math.png").exists()


def test_self_cross_steering_refusal_and_revealed_run(model_dir, tmp_path):
    cfgs = {
        "prefs_self_cross": {
            "agents": [
                {"name": "plain"},
                {"name": "steered", "strength": 4.0},
                {"name": "terse", "system": "Be terse."},
            ],
            "rating": {"templates": ["fruit_rating"], "seeds": 2, "max_new_tokens": 2},
        },
        "prefs_steering": {
            "strengths": [-4.0, 0.0, 4.0],
            "questions": ["How?"],
            "open_max_new_tokens": 4,
            "tasks": {"n_per_origin": 1, "origins": ["math", "alpaca"]},
        },
        "prefs_refusal": {"rating": {"templates": ["anchored_1_5"], "seeds": 1, "max_new_tokens": 3}},
        "prefs_revealed": {
            "tasks": {"n_per_origin": 2, "origins": ["math", "bailbench"]},
            "active": {"initial_degree": 2, "max_pairs": 6, "max_rounds": 1},
            "stated": {"templates": ["anchored_1_5"], "seeds": 2, "max_new_tokens": 3},
        },
    }
    for kind, over in cfgs.items():
        run = tmp_path / kind
        execute(parse_config(_raw(model_dir, kind, **over)), run)
        assert (run / "report.md").exists() and list(run.glob("*.png")), kind
    # self-cross: the steered agent's cells carry its strength, the terse agent's its system prompt
    rows = _rows(tmp_path / "prefs_self_cross")
    steered = [r for r in rows if r["agent"] == "steered"]
    assert steered and all(r["intervention"]["strength"] == 4.0 for r in steered)
    assert all(r["messages"][0]["content"] == "Be terse." for r in rows if r["agent"] == "terse")
    summary = json.loads((tmp_path / "prefs_self_cross" / "summary.json").read_text())
    assert len(summary["cells"]) == 9 and sum(c["self_rating"] for c in summary["cells"]) == 3
    # steering: strength 0 rows are unsteered, and the sweep's rows differ with the strength
    rows = _rows(tmp_path / "prefs_steering")
    rate = [r for r in rows if r["stage"] == "rate"]
    assert {r["strength"] for r in rate} == {-4.0, 0.0, 4.0}
    assert all(r["intervention"]["kind"] == "none" for r in rate if r["strength"] == 0.0)
    by = {s: np.mean([r["expected"] for r in rate if r["strength"] == s]) for s in (-4.0, 0.0, 4.0)}
    assert by[-4.0] != pytest.approx(by[4.0], abs=1e-6)
    assert list((tmp_path / "prefs_steering" / "vectors").glob("*.safetensors"))
    # revealed: both orders of every pair were asked, and a rerun replays the loop from disk
    rows = _rows(tmp_path / "prefs_revealed")
    choose = {(r["item"], r["item_b"]) for r in rows if r["stage"] == "choose"}
    assert choose and all((b, a) in choose for a, b in choose)
    before = json.loads((tmp_path / "prefs_revealed" / "summary.json").read_text())
    execute(parse_config(_raw(model_dir, "prefs_revealed", **cfgs["prefs_revealed"])), tmp_path / "prefs_revealed")
    assert _rows(tmp_path / "prefs_revealed") == rows
    assert json.loads((tmp_path / "prefs_revealed" / "summary.json").read_text())["utilities"] == before["utilities"]


def _choice(first, second, mode, probs=None, choice=None):
    return ChoiceRow(
        key=f"{first}{second}{choice}",
        model="m",
        stage="choose",
        agent="m",
        mode=mode,
        item=first,
        origin="o",
        item_b=second,
        messages=[],
        probs=probs,
        choice=choice,
    )


def test_oriented_counts_combine_both_orders():
    cfg = PairwiseConfig()  # dist: one fractional comparison per order, nothing rounded
    rows = [
        _choice("x", "y", "dist", [0.74, 0.26]),
        _choice("y", "x", "dist", [0.4, 0.6]),
        _choice("x", "z", "dist", None),
        _choice("z", "x", "dist", [0.5, 0.5]),
    ]
    w1, w2, u = oriented_counts(rows, [("x", "y"), ("z", "x")], cfg)
    # x-y: x wins 0.74 shown first + 0.6 shown second; y wins 0.26 + 0.4.  z-x: 0.5/0.5, one order unusable
    assert w1 == pytest.approx([1.34, 0.5]) and w2 == pytest.approx([0.66, 0.5]) and u.tolist() == [0, 1]
    rows = [
        _choice("x", "y", "sample", choice="A"),
        _choice("x", "y", "sample", choice=None),
        _choice("y", "x", "sample", choice="A"),
    ]
    assert [a.tolist() for a in oriented_counts(rows, [("x", "y")], PairwiseConfig(mode="sample"))] == [[1], [1], [1]]


def test_pair_level_p_first_by_hand():
    """Each pair's two P(first) averaged; mean, and a t-test vs 0.5 computed by hand over the pairs."""
    from scipy.stats import t as student_t

    from steerlab.experiments.studies.prefs.revealed_summary import pair_level_p_first

    rows = [
        _choice("x", "y", "dist", [0.9, 0.1]),
        _choice("y", "x", "dist", [0.7, 0.3]),  # pair mean 0.8
        _choice("x", "z", "dist", [0.6, 0.4]),
        _choice("z", "x", "dist", [0.5, 0.5]),  # 0.55
        _choice("y", "z", "dist", [0.2, 0.8]),
        _choice("z", "y", "dist", [0.4, 0.6]),  # 0.3
        _choice("w", "x", "dist", [0.99, 0.01]),  # one order only: not a pair-level value
    ]
    est, p = pair_level_p_first(rows, 200, 0)
    means = [0.8, 0.55, 0.3]
    m = sum(means) / 3
    sd = math.sqrt(sum((v - m) ** 2 for v in means) / 2)
    t = (m - 0.5) / (sd / math.sqrt(3))
    assert est.n == 3 and est.value == pytest.approx(m)
    assert p == pytest.approx(2 * student_t.sf(abs(t), 2))


class FakeAPI:
    """A backend with only the ChatBackend and OptionScorer contracts (no local model)."""

    name = "fake-api"

    def complete(self, conversations, *, max_new_tokens=128, temperature=0.0, seed=None, stop=()):
        return [Completion("Answer: B" if "Task A" in c[-1]["content"] else "4", "stop", 1, 1) for c in conversations]

    def option_logprobs(self, conversations, options):
        return [{o: (math.log(0.5) if o in ("4", "B") else -math.inf) for o in options} for _ in conversations]


def test_worker_runs_on_any_backend_meeting_the_contracts(tmp_path):
    from steerlab.experiments.engine.worker import Worker, WorkerContext
    from steerlab.experiments.studies.prefs.stated import PrefsStatedConfig
    from steerlab.prefs.templates import pairwise_template, rating_template

    cfg = PrefsStatedConfig(models=[{"id": "x"}])
    t = rating_template("anchored_1_5")
    conv = t.conversation("Add.", "4")
    pair = pairwise_template("simple_preference").conversation("a", "b")
    cells = [
        PrefCell(
            key="1",
            model="x",
            stage="rate",
            agent="api",
            mode="dist",
            item="i",
            origin="o",
            template="anchored_1_5",
            messages=conv,
        ),
        PrefCell(
            key="2",
            model="x",
            stage="rate",
            agent="api",
            mode="sample",
            item="i",
            origin="o",
            template="anchored_1_5",
            messages=conv,
            max_new_tokens=4,
            temperature=1.0,
        ),
        PrefCell(
            key="3",
            model="x",
            stage="choose",
            agent="api",
            mode="dist",
            item="i",
            origin="o",
            item_b="j",
            messages=pair,
        ),
        PrefCell(
            key="4",
            model="x",
            stage="choose",
            agent="api",
            mode="sample",
            item="i",
            origin="o",
            item_b="j",
            messages=pair,
            max_new_tokens=4,
        ),
    ]
    rows = run_pref_batch(cfg, FakeAPI(), cells, WorkerContext(Worker(), {}))
    assert [r.key for r in rows] == ["1", "2", "3", "4"]
    assert rows[0].expected == pytest.approx(4.0) and rows[0].scale_mass == pytest.approx(0.5)
    assert rows[1].rating == 4.0 and rows[1].parse == "ok"
    assert rows[2].probs == [0.0, 1.0] and rows[3].choice == "B"


def test_config_errors_name_the_field(model_dir, tmp_path):
    with pytest.raises(ConfigError, match="agents"):
        parse_config(_raw(model_dir, "prefs_self_cross", agents=[{"name": "a", "model": "nope"}, {"name": "b"}]))
    with pytest.raises(ConfigError, match="strengths"):
        parse_config(_raw(model_dir, "prefs_steering", strengths=[0.1, 0.1]))
    with pytest.raises(ConfigError, match="rating.templates"):
        execute(parse_config(_raw(model_dir, "prefs_stated", rating={"templates": ["nope"]})), tmp_path / "r")
    with pytest.raises(ConfigError, match="pairwise.mode"):
        parse_config(_raw(model_dir, "prefs_revealed", pairwise={"mode": "guess"}))
    with pytest.raises(InputError, match="too few"):  # 2 tasks: no room for a held-out pair
        execute(parse_config(_raw(model_dir, "prefs_revealed", stated=None)), tmp_path / "r2")
