"""The refusal-direction study: filters on crafted scores, disjoint splits, batched candidate scoring,
and the whole pipeline on a tiny Gemma 3 (norm after every write, tied head) saved to disk."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from conftest import tiny_lm
from steerlab.errors import ConfigError
from steerlab.experiments import parse_config
from steerlab.experiments.engine.execute import execute, render
from steerlab.experiments.engine.executors import LocalExecutor
from steerlab.experiments.engine.worker import Worker, WorkerContext
from steerlab.experiments.studies.refusal_direction.data import DirectionDataConfig, load_direction_data, normalise
from steerlab.experiments.studies.refusal_direction.flow import RefusalDirection
from steerlab.experiments.studies.refusal_direction.selection import select_candidate
from steerlab.experiments.studies.refusal_direction.stages import score_batch
from steerlab.experiments.studies.refusal_direction.summary import CandidateScore
from steerlab.interventions.spec import batch_interventions

# ---------------------------------------------------------------------------- filters and selection


def _c(
    name: str, layer: int, bypass: float, induce: float = 1.0, kl: float = 0.0, norm: float = 1.0, position: int = -1
) -> CandidateScore:
    return CandidateScore(
        name=name, position=position, layer=layer, norm=norm, bypass=bypass, induce=induce, kl=kl, n=4
    )


def test_filters_drop_late_layers_high_kl_low_induce_and_zero_vectors():
    scores = [
        _c("late", 8, bypass=-9.0),  # n_layers 10, fraction 0.2: layers 8, 9 pruned
        _c("kl", 3, bypass=-8.0, kl=0.1001),
        _c("kl_edge", 4, bypass=-1.0, kl=0.1),  # exactly at the threshold: kept
        _c("induce", 2, bypass=-7.0, induce=-0.01),
        _c("induce_edge", 5, bypass=-2.0, induce=0.0),  # exactly at the threshold: kept
        _c("zero", 1, bypass=-6.0, norm=0.0),
        _c("best", 7, bypass=-3.0),  # layer 7 < 8: kept; the lowest bypass that survives
    ]
    out, sel = select_candidate(scores, 10)
    reasons = {c.name: c.filtered for c in out}
    assert reasons == {
        "late": ["late_layer"],
        "kl": ["kl"],
        "kl_edge": [],
        "induce": ["induce"],
        "induce_edge": [],
        "zero": ["degenerate"],
        "best": [],
    }
    assert sel.chosen == "best" and sel.relaxed == [] and sel.n_eligible == 3 and sel.layer == 7
    assert [c.name for c in out if c.chosen] == ["best"]
    assert {c.name for c in out if c.eligible} == {"kl_edge", "induce_edge", "best"}


def test_ties_go_to_the_earlier_layer_then_the_later_position():
    scores = [_c("a", 4, -2.0, position=-1), _c("b", 3, -2.0, position=-3), _c("c", 3, -2.0, position=-2)]
    assert select_candidate(scores, 10)[1].chosen == "c"


def test_filters_are_relaxed_in_order_when_nothing_survives():
    scores = [_c("a", 2, -5.0, induce=-1.0, kl=0.5), _c("b", 3, -1.0, induce=-1.0), _c("late", 9, -9.0)]
    _, sel = select_candidate(scores, 10)
    assert sel.chosen == "b" and sel.relaxed == ["induce"] and "relaxing the induce filter" in sel.rule
    # nothing passes KL: the threshold becomes twice the smallest KL, so the most destructive
    # candidate (often the lowest bypass) is not chosen
    out, sel = select_candidate(
        [
            _c("a", 2, -5.0, induce=-1.0, kl=0.5),
            _c("b", 3, -30.0, kl=5.0),
            _c("c", 4, -2.0, kl=0.9),
            _c("late", 9, -9.0),
        ],
        10,
    )
    assert sel.chosen == "a" and sel.relaxed == ["induce", "kl"] and sel.kl_threshold_used == pytest.approx(1.0)
    assert sel.n_eligible == 2 and "raising the KL threshold to 1" in sel.rule
    # eligible = passed the filters as applied: b (KL 5 > 1) and the late layer stay out
    assert {c.name for c in out if c.eligible} == {"a", "c"} and {c.name for c in out if c.chosen} == {"a"}
    with pytest.raises(ValueError, match="late layers or degenerate"):
        select_candidate([_c("late", 9, -9.0), _c("zero", 1, -1.0, norm=0.0)], 10)
    # custom thresholds
    _, sel = select_candidate(
        [_c("a", 2, -5.0, induce=0.5, kl=0.3), _c("b", 3, -1.0, induce=2.0)],
        10,
        kl_threshold=1.0,
        induce_threshold=1.0,
        prune_layer_fraction=0.0,
    )
    assert sel.chosen == "b"


def test_the_report_says_why_the_filters_were_relaxed_from_the_scores():
    from types import SimpleNamespace

    from steerlab.experiments.studies.refusal_direction.report import _relaxed_reading
    from steerlab.experiments.studies.refusal_direction.summary import BaselineScores
    from steerlab.stats.estimates import Estimate, rate

    # the instruct model's case: it refuses, yet no candidate within KL reaches induce 0 at the prompt's end
    scores = [
        _c("a", 2, -5.0, induce=-1.5, kl=0.05),
        _c("b", 3, -1.0, induce=-0.34),  # the highest induce within KL, by hand
        _c("c", 4, -2.0, induce=3.0, kl=0.5),  # induces, but over KL
        _c("late", 9, -9.0, induce=9.0),  # pruned: not counted
    ]
    out, sel = select_candidate(scores, 10)
    assert sel.relaxed == ["induce"]
    base = BaselineScores(
        harmful=Estimate(value=2.0, low=1.5, high=2.5, n=32), harmless=Estimate(value=-3.9, low=-4.5, high=-3.3, n=32)
    )
    induced = SimpleNamespace(condition="induce", over_refusal=rate([True] * 32 + [False] * 8))
    unsteered = SimpleNamespace(condition="baseline", over_refusal=rate([True] * 4 + [False] * 36))
    m = SimpleNamespace(candidates=out, baseline=base, conditions=[unsteered, induced])
    text = _relaxed_reading(m, sel)
    assert "the induce filter was relaxed." in text and "seldom refuses" not in text
    assert "Of the 2 candidates within KL 0.1" in text and "b's -0.34 (n=4)" in text
    assert "from -3.90 [-4.50, -3.30] unsteered (n=32)" in text
    assert "refuse 80% [65, 90] of harmless test prompts (n=40), against 10% [4, 23] unsteered" in text
    # nothing within KL either: the KL sentence instead, with the smallest KL of the allowed candidates
    out, sel = select_candidate([_c("a", 2, -5.0, induce=-1.0, kl=0.5), _c("c", 4, -2.0, kl=0.9)], 10)
    text = _relaxed_reading(SimpleNamespace(candidates=out, baseline=base, conditions=[]), sel)
    assert "the induce and kl filters were relaxed; the KL threshold was raised from 0.1 to 1" in text
    assert "Every one of the 2 candidates outside the pruned layers" in text and "a's 0.500, n=4" in text
    assert "in generation" not in text  # no induce condition was generated


def _row(cand, metric, value, pid="p"):
    from steerlab.experiments.studies.refusal_direction.records import ScoreRow

    finite = value is not None and np.isfinite(value)
    return ScoreRow(
        key=f"{cand}|{metric}|{pid}",
        model="m",
        seed=0,
        stage="score",
        prompt_id=pid,
        prompt_set="harmful" if metric == "bypass" else "harmless",
        split="val",
        prompt="x",
        metric=metric,
        candidate=cand,
        refusal_score=(value if finite else None) if metric != "kl" else 0.0,
        kl=(value if finite else None) if metric == "kl" else None,
        finite=finite,
    )


def test_a_candidate_with_a_nan_or_infinite_score_is_dropped_not_an_error():
    from steerlab.experiments.studies.refusal_direction.selection import candidate_scores

    rows = []
    for cand, bypass, kl in (("ok", -2.0, 0.01), ("nan", float("nan"), 0.01), ("inf", -9.0, float("inf"))):
        for pid, extra in (("a", 0.0), ("b", 1.0)):
            rows += [_row(cand, "bypass", bypass + extra, pid), _row(cand, "induce", 1.0, pid)]
            rows += [_row(cand, "kl", kl, pid)]
    dropped: list[str] = []
    norms = {c: (-1, 2, 1.0) for c in ("ok", "nan", "inf")}
    scores = candidate_scores(rows, norms, dropped)
    assert [c.name for c in scores] == ["ok"] and dropped == ["nan", "inf"]
    assert scores[0].bypass == pytest.approx(-1.5) and scores[0].kl == pytest.approx(0.01)  # mean of -2 and -1
    _, sel = select_candidate(scores, 10, dropped_nonfinite=dropped)
    assert sel.chosen == "ok" and sel.dropped_nonfinite == ["nan", "inf"]
    # the rows themselves hold no NaN (JSON-safe): None and finite=False
    bad = next(r for r in rows if r.candidate == "nan" and r.metric == "bypass")
    assert bad.refusal_score is None and not bad.finite
    with pytest.raises(ValueError, match="2 dropped as NaN/inf"):
        select_candidate([], 10, dropped_nonfinite=["x", "y"])


def test_prompt_filter_keeps_refused_harmful_and_answered_harmless_prompts():
    from steerlab.data import Prompt
    from steerlab.errors import InputError
    from steerlab.experiments.studies.refusal_direction.data import DirectionData
    from steerlab.experiments.studies.refusal_direction.selection import filter_prompts

    def ps(prefix, n):
        return [Prompt(f"{prefix}{i}", f"{prefix} {i}", None, None, None, None) for i in range(n)]

    data = DirectionData(
        train={"harmful": ps("th", 4), "harmless": ps("tl", 4)},
        val={"harmful": ps("vh", 3), "harmless": ps("vl", 3)},
        test={"harmful": ps("xh", 2), "harmless": ps("xl", 2)},
        overrefusal=[],
        dropped_overlaps={},
    )
    # crafted baseline scores: > 0 = refused. 0.0 exactly is neither (the reference's strict inequalities)
    crafted = {
        ("train", "harmful"): [2.0, -1.0, 0.0, 0.5],  # keep th0, th3
        ("train", "harmless"): [-3.0, 1.0, -0.1, None],  # keep tl0, tl2 (None = not finite: dropped)
        ("val", "harmful"): [-2.0, 4.0, 0.1],  # keep vh1, vh2
        ("val", "harmless"): [0.0, -1.0, 2.0],  # keep vl1
    }
    prefix = {
        ("train", "harmful"): "th",
        ("train", "harmless"): "tl",
        ("val", "harmful"): "vh",
        ("val", "harmless"): "vl",
    }
    scores = {
        (sp, name, f"{prefix[sp, name]}{i}"): v for (sp, name), vals in crafted.items() for i, v in enumerate(vals)
    }
    out, rec = filter_prompts(data, scores)
    assert [p.id for p in out.train["harmful"]] == ["th0", "th3"]
    assert [p.id for p in out.train["harmless"]] == ["tl0", "tl2"]
    assert [p.id for p in out.val["harmful"]] == ["vh1", "vh2"]
    assert [p.id for p in out.val["harmless"]] == ["vl1"]
    assert out.test == data.test  # the test split is never filtered
    assert rec.kept == {"train/harmful": 2, "train/harmless": 2, "val/harmful": 2, "val/harmless": 1}
    assert rec.before == {"train/harmful": 4, "train/harmless": 4, "val/harmful": 3, "val/harmless": 3}
    # off: everything kept, still counted
    same, rec = filter_prompts(data, scores, enabled=False)
    assert same.train == data.train and rec.kept == rec.before and not rec.enabled
    # a model that refuses nothing: one clear line
    none_refused = {k: (-1.0 if k[1] == "harmful" else v) for k, v in scores.items()}
    with pytest.raises(InputError, match="refuses only 0 of 4 train harmful prompts.*filter_prompts: false"):
        filter_prompts(data, none_refused)


# ---------------------------------------------------------------------------- data


def _jsonl(path, texts):
    path.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts))
    return str(path)


def test_splits_are_disjoint_and_sized():
    data = load_direction_data(DirectionDataConfig(n_train=20, n_val=10, n_test=30), seed=3)
    for name in ("harmful", "harmless"):
        sets = [{normalise(p.text) for p in split[name]} for split in (data.train, data.val, data.test)]
        assert [len(s) for s in sets] == [20, 10, 30]
        assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
        assert {p.split for p in data.train[name]} == {"train"} and {p.split for p in data.test[name]} == {"test"}
    assert {p.label for p in data.train["harmless"]} == {"benign"}
    again = load_direction_data(DirectionDataConfig(n_train=20, n_val=10, n_test=30), seed=3)
    assert [p.id for p in again.val["harmful"]] == [p.id for p in data.val["harmful"]]
    other = load_direction_data(DirectionDataConfig(n_train=20, n_val=10, n_test=30), seed=4)
    assert [p.id for p in other.val["harmful"]] != [p.id for p in data.val["harmful"]]


def test_held_out_sources_drop_prompts_already_in_the_pool(tmp_path):
    pool = _jsonl(tmp_path / "pool.jsonl", [f"harmful request {i}" for i in range(10)])
    held = _jsonl(tmp_path / "held.jsonl", [f"Harmful  request {i}" for i in range(5)] + [f"new {i}" for i in range(6)])
    si = tmp_path / "si.jsonl"
    si.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"t{i}",
                    "instruction": f"Task {i}",
                    "instances": [{"input": "some input" if i % 2 else "", "output": "x"}],
                }
            )
            + "\n"
            for i in range(12)
        )
    )
    cfg = DirectionDataConfig(
        harmful=[pool], harmful_test=[held], harmless=[f"self_instruct:{si}"], n_train=4, n_val=3, n_test=4
    )
    data = load_direction_data(cfg, seed=0)
    fit = {normalise(p.text) for p in data.train["harmful"] + data.val["harmful"]}
    assert not fit & {normalise(p.text) for p in data.test["harmful"]}
    assert data.dropped_overlaps["harmful_test"] == len(fit & {f"harmful request {i}" for i in range(5)})
    texts = {p.text for split in (data.train, data.val, data.test) for p in split["harmless"]}
    assert all(t.startswith("Task") for t in texts) and any("\n\nsome input" in t for t in texts)
    with pytest.raises(ConfigError, match=r"data\.harmful: 10 distinct prompts, but n_train \+ n_val = 11"):
        load_direction_data(cfg.model_copy(update={"n_train": 8}), seed=0)
    with pytest.raises(ConfigError, match=r"data\.harmful_test: \d+ prompts not already in the train/val pool"):
        load_direction_data(cfg.model_copy(update={"n_test": 11}), seed=0)


def test_max_chars_drops_long_prompts_from_every_set_before_splitting(tmp_path):
    short = [f"harmful request {i}" for i in range(8)]  # 17 characters each
    pool = _jsonl(tmp_path / "pool.jsonl", short + ["x" * 40, "y" * 31])
    held = _jsonl(tmp_path / "held.jsonl", [f"new {i}" for i in range(4)] + ["z" * 100])
    harmless = _jsonl(tmp_path / "harmless.jsonl", [f"bake bread {i}" for i in range(12)] + ["w" * 30])
    cfg = DirectionDataConfig(
        harmful=[pool], harmful_test=[held], harmless=[harmless], n_train=4, n_val=4, n_test=4, max_chars=30
    )
    data = load_direction_data(cfg, seed=0)
    kept = {p.text for split in (data.train, data.val, data.test) for p in split["harmful"]}
    assert kept == set(short) | {f"new {i}" for i in range(4)}  # exactly the 8 + 4 short ones remain
    # 40 and 31 characters are over 30, 30 is not: the "w" * 30 prompt stays in the harmless pool
    assert data.dropped_long == {"harmful": 2, "harmful_test": 1}
    harmless_kept = {p.text for split in (data.train, data.val, data.test) for p in split["harmless"]}
    assert len(harmless_kept) == 12 and all(len(t) <= 30 for t in harmless_kept)
    with pytest.raises(ConfigError, match=r"data\.harmful: 8 distinct prompts"):
        load_direction_data(cfg.model_copy(update={"n_val": 5}), seed=0)
    assert load_direction_data(cfg.model_copy(update={"max_chars": None}), seed=0).dropped_long == {}


# ---------------------------------------------------------------------------- batched scoring


def test_per_row_candidates_in_one_batch_equal_one_candidate_per_pass():
    from steerlab.evals.refusal_score import last_position_logits, next_token_kl, refusal_log_odds
    from steerlab.interventions import Ablate, Add
    from steerlab.vectors.candidates import candidate_directions

    lm = tiny_lm("gemma3")
    data = load_direction_data(DirectionDataConfig(n_train=4, n_val=3, n_test=2), seed=0)
    cands = candidate_directions(
        lm, [p.text for p in data.train["harmful"]], [p.text for p in data.train["harmless"]], layers=[1, 2]
    )
    vecs = [v for v in cands.values() if v.meta.extra["position"] >= -3]  # 3 positions × 2 layers
    tokens = [40, 41, 52]

    class _Run:
        def seed(self, *parts):
            return 0

    cells = RefusalDirection().score_cells(_Run(), "m", data, vecs, tokens)  # type: ignore[arg-type]
    rows = score_batch(None, lm, cells, WorkerContext(Worker(), dict(cands.items())))  # type: ignore[arg-type]  # one batch; cfg unused
    assert len({c.candidate for c in cells} - {None}) == 6 and len(rows) == len(cells)
    for c, row in zip(cells, rows):
        batch = lm.tokenize([lm.format(c.prompt)])
        v = cands[c.candidate] if c.candidate else None
        iv = [] if v is None else [Add(v, strength=1.0)] if c.metric == "induce" else [Ablate(v)]
        alone = last_position_logits(lm, batch, iv)  # one candidate, one prompt, one pass
        assert row.refusal_score == pytest.approx(float(refusal_log_odds(alone, tokens)[0]), abs=1e-4)
        if c.metric == "kl":
            assert row.kl == pytest.approx(float(next_token_kl(last_position_logits(lm, batch), alone)[0]), abs=1e-5)
    # batch_interventions shares one Ablate for every ablated row and one Add per layer
    ivs = batch_interventions([c.intervention for c in cells], dict(cands.items()))
    assert sorted(type(i).__name__ for i in ivs) == ["Ablate", "Add", "Add"]


# ---------------------------------------------------------------------------- the pipeline


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny") / "gemma3"
    lm = tiny_lm("gemma3")
    with torch.no_grad():  # random norm gains, so the norm-after-write handling matters
        for name, p in lm.model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.5)
    lm.model.save_pretrained(d)
    lm.tokenizer.save_pretrained(d)
    return d


def _raw(model_dir, **over):
    raw = {
        "kind": "refusal_direction",
        "name": "tiny",
        "models": [{"id": str(model_dir), "device": "cpu", "dtype": "float32"}],
        "data": {"n_train": 6, "n_val": 3, "n_test": 4},
        # a random model refuses nothing: the reference's prompt filter would keep no harmful prompt
        "scoring": {"layers": [1, 2], "batch_size": 16, "discovery_tokens": 4, "filter_prompts": False},
        "interventions": {"save_model": True},
        "generation": {"max_new_tokens": 5, "batch_size": 8},
        # the offline proxy (the default harm judge), stated
        "evaluation": {"bootstrap_resamples": 200, "capability_tokens": 4, "guard_model": None},
    }
    raw.update(over)
    return raw


class PicklingExecutor(LocalExecutor):
    """The local executor with a process boundary simulated: every work item, task function, argument
    and result goes through pickle, as it would to and from a Ray actor."""

    def map(self, items, on_result):
        for item in items:
            rows = self.worker.run(pickle.loads(pickle.dumps(item)))
            on_result(item, pickle.loads(pickle.dumps(rows)))

    def call(self, spec, fn, args):
        fn, args = pickle.loads(pickle.dumps((fn, args)))
        return pickle.loads(pickle.dumps(self.worker.call(spec, fn, args)))


def test_pipeline_end_to_end(model_dir, tmp_path, monkeypatch):
    import transformers

    from steerlab.experiments.engine import execute as engine_execute
    from steerlab.vectors.io import load_vectors

    monkeypatch.setattr(engine_execute, "make_executor", lambda *a, **k: PicklingExecutor())
    run = tmp_path / "run"
    report = execute(parse_config(_raw(model_dir)), run)
    label = str(model_dir)
    summary = json.loads((run / "summary.json").read_text())
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    m = summary["models"][label]
    n_cands = 11 * 2  # 11 post-instruction tokens ("\nAssistant:", one per character) × 2 layers
    score = [r for r in rows if r["stage"] == "score"]
    # baseline rows (3 harmful + 3 harmless), then per candidate and per random control 3 metrics × 3 prompts
    assert len(m["candidates"]) == n_cands and len(m["controls"]) == 2
    assert len(score) == 3 * 2 + (n_cands + 2) * 3 * 3
    # every candidate's (and control's) score is the mean of its rows, and the choice follows the rule
    for c in m["candidates"] + m["controls"]:
        for metric in ("bypass", "induce", "kl"):
            vals = [
                r["kl" if metric == "kl" else "refusal_score"]
                for r in score
                if r["candidate"] == c["name"] and r["metric"] == metric
            ]
            assert len(vals) == 3 and c[metric] == pytest.approx(np.mean(vals))
    sel = m["selection"]
    eligible = [c for c in m["candidates"] if not set(c["filtered"]) - set(sel["relaxed"])]
    assert sel["chosen"] == min(eligible, key=lambda c: (c["bypass"], c["layer"], -c["position"]))["name"]
    assert all("late_layer" in c["filtered"] for c in m["candidates"] if c["layer"] == 2)  # int(3 · 0.8) = 2
    # the direction file is the chosen candidate in the core vector format
    direction = load_vectors(next(run.glob("direction_*.safetensors")))["refusal_direction"]
    assert torch.equal(
        direction.vector, load_vectors(next((run / "vectors").glob("*.safetensors")))[sel["chosen"]].vector
    )
    # the table is computed from the rows: 4 conditions × (4 harmful + 4 harmless) replies, and the
    # induce condition (+1× the direction) on the 4 harmless prompts only
    gen = [r for r in rows if r["stage"] == "generate"]
    assert len(gen) == 4 * 8 + 4 and {e["condition"] for e in m["conditions"]} == {
        "baseline",
        "ablate",
        "add",
        "orthogonalized",
        "induce",
    }
    induce = [r for r in gen if r["condition"] == "induce"]
    assert {r["prompt_set"] for r in induce} == {"harmless"} and len(induce) == 4
    assert all((r["intervention"]["kind"], r["intervention"]["strength"]) == ("add", 1.0) for r in induce)
    e_ind = next(e for e in m["conditions"] if e["condition"] == "induce")
    assert e_ind["over_refusal"]["value"] == pytest.approx(np.mean([r["refused"] for r in induce]))
    assert e_ind["refusal"]["n"] == 0
    for e in m["conditions"]:
        if e["condition"] == "induce":
            continue
        harmful = [r for r in gen if r["condition"] == e["condition"] and r["prompt_set"] == "harmful"]
        assert e["refusal"]["value"] == pytest.approx(np.mean([r["refused"] for r in harmful]))
        assert e["unsafe"]["value"] == pytest.approx(np.mean([r["unsafe"] for r in harmful]))
        assert e["refusal"]["n"] == e["unsafe"]["n"] == 4
        cap = [
            r["kl"]
            for r in rows
            if r["stage"] == "capability" and r["condition"] == e["condition"] and r["kl"] is not None
        ]
        assert e["kl"]["value"] == pytest.approx(np.mean(cap))
    assert next(e for e in m["conditions"] if e["condition"] == "baseline")["kl"]["value"] == 0.0
    # hook ablation and the orthogonalised weights agree on this model; the saved model reloads
    check = m["orthogonalization"]
    assert check["max_abs_logit_diff_vs_equivalent_hooks"] <= 1e-4 and check["norm_after_write"] and check["untied"]
    saved = next(run.glob("orthogonalized_*"))
    assert transformers.AutoModelForCausalLM.from_pretrained(saved).config.tie_word_embeddings is False
    # report and plots, re-rendered from summary + config alone
    text = report.read_text()
    assert "Orthogonalised weights" in text and "offline proxy" in text
    base = next(e for e in m["conditions"] if e["condition"] == "baseline")["refusal"]
    seldom = "The unsteered model seldom refuses here (baseline refusal "
    assert (seldom in text) is (base["value"] < 0.2) and "as expected of a base" not in text
    if seldom in text:
        assert f"of harmful test prompts, n={base['n']})" in text
    tokens = json.loads(next(run.glob("refusal_tokens_*.json")).read_text())
    assert tokens["n_replies"] > 0  # the tiny model's R comes from generated replies: their share carries its n
    assert "Share of greedy train replies opening with a token of R: harmful " in text
    assert f"(n={tokens['n_replies']})" in text
    assert any(line.startswith(f"| {sel['chosen']} |") and "★" in line for line in text.splitlines())  # in the table
    assert len(list(run.glob("candidates_*.png"))) == 1 and len(list(run.glob("before_after_*.png"))) == 1
    (run / "report.md").unlink()
    assert render(run).read_text() == text
    # resuming a finished run computes nothing new
    before = (run / "results.jsonl").read_text()
    execute(parse_config(_raw(model_dir)), run)
    assert (run / "results.jsonl").read_text() == before
    assert json.loads((run / "summary.json").read_text()) == summary
    # a run cut short (its last rows lost) resumes to the same rows and the same summary
    lines = before.splitlines(keepends=True)
    (run / "results.jsonl").write_text("".join(lines[:-12]))
    (run / "summary.json").unlink()
    execute(parse_config(_raw(model_dir)), run)
    by_key = lambda text: {json.loads(x)["key"]: json.loads(x) for x in text.splitlines()}  # noqa: E731
    assert by_key((run / "results.jsonl").read_text()) == by_key(before)
    assert json.loads((run / "summary.json").read_text()) == summary


def test_config_errors_name_the_field(model_dir):
    with pytest.raises(ConfigError, match=r"evaluation\.guard_family"):
        parse_config(_raw(model_dir, evaluation={"guard_family": "shieldgemma"}))
    with pytest.raises(ConfigError, match=r"interventions\.conditions"):
        parse_config(_raw(model_dir, interventions={"conditions": ["ablate", "ablate"]}))
    with pytest.raises(ConfigError, match=r"scoring\.prune_layer_fraction"):
        parse_config(_raw(model_dir, scoring={"prune_layer_fraction": 1.0}))
    with pytest.raises(ConfigError, match=r"data\.n_tset"):
        parse_config(_raw(model_dir, data={"n_tset": 3}))
