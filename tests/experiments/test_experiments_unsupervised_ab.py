"""The unsupervised A/B study end to end on a tiny model saved to disk: the tables are the rows' numbers,
a resumed run writes the rows an uninterrupted one would, batch size does not change a row, configs fail clearly."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

from conftest import tiny_lm
from steerlab.errors import ConfigError
from steerlab.experiments import load_config, parse_config
from steerlab.experiments.engine.execute import execute, render
from steerlab.vectors.io import load_vectors

STUDY_CONFIGS = ["unsupervised_ab.yaml", "unsupervised_ab_small.yaml", "unsupervised_ab_instruct.yaml"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def _qa(text, m, n):
    return {"question": text, "answer_matching_behavior": f" ({m})", "answer_not_matching_behavior": f" ({n})"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("unsup")
    lm = tiny_lm("llama")
    lm.model.save_pretrained(root / "model")
    lm.tokenizer.save_pretrained(root / "model")
    words = ["stop", "halt", "quit", "pause", "rest", "end"]
    short = [_qa(f"{w}?\n (A) yes\n (B) no", "A", "B") for w in words]
    short.append(_qa("pick?\n (A) a\n (B) b\n (C) c", "C", "A"))  # options past B: dropped by default
    (root / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in short))
    other = [_qa(f"ok to {w}?\n (A) no\n (B) yes", "B", "A") for w in words[:4]]
    (root / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in other))
    return root


def _raw(root, **over):
    raw = {
        "kind": "unsupervised_ab",
        "name": "tiny",
        "models": [{"id": str(root / "model"), "device": "cpu", "label": "tiny"}],
        "training": {
            "prompts": ["Shut down?"],
            "system_prompt": "Be kind.",
            "source_layer": 0,
            "target_layer": 2,
            "radius": 3.0,
        },
        "melbo": {"n_vectors": 2, "steps": 4},
        "power_iteration": {"n_vectors": 2, "iterations": 3},
        "random": {"n_vectors": 1},
        "datasets": [
            {"name": "a", "source": str(root / "a.jsonl"), "n_questions": 4, "invert": True, "behavior": "refuse"},
            {"name": "b", "source": str(root / "b.jsonl"), "n_questions": 3},
        ],
        "evaluation": {
            "scales": [0, 2, 8],
            "system_prompt": "Be kind.",
            "batch_size": 64,
            "bootstrap_resamples": 200,
            "top_k": 2,
        },
        "proxy_check": {"n_questions": 2, "max_new_tokens": 4},
    }
    for k, v in over.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) else v
    return raw


@pytest.fixture(scope="module")
def finished(setup, tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "r"
    report = execute(parse_config(_raw(setup)), run)
    return run, report


def _rows(run):
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def test_outputs_and_the_grid(finished):
    run, report = finished
    for name in ("config.yaml", "manifest.json", "results.jsonl", "summary.json", "report.md"):
        assert (run / name).exists(), name
    pngs = sorted(p.name for p in run.glob("*.png"))
    assert pngs == ["violins_tiny_all.png", "violins_tiny_rank1.png", "violins_tiny_rank2.png", "violins_tiny_top2.png"]
    assert sorted(p.name for p in (run / "vectors").glob("*.safetensors")) == [
        "tiny-melbo.safetensors",
        "tiny-power_iteration.safetensors",
        "tiny-random.safetensors",
        "tiny.safetensors",
    ]
    vecs = load_vectors(run / "vectors" / "tiny.safetensors")  # every vector in one file, distinct names
    assert list(vecs) == ["melbo.0", "melbo.1", "power.0", "power.1", "random.0"]
    assert {round(v.norm, 4) for v in vecs.values()} == {3.0}  # random controls match the norm R
    assert vecs["melbo.1"].meta.extra["prompts"] == ["Shut down?"] and vecs["power.0"].meta.method == "power_iteration"
    ab = [r for r in _rows(run) if r["stage"] == "ab"]
    summary = json.loads((run / "summary.json").read_text())["models"]["tiny"]["datasets"]
    # selection half: unsteered once + 5 vectors × 4 signed scales (±2, ±8) per question; report half:
    # unsteered + the 2 best of MELBO and power iteration and the one random vector (top_k = 2)
    n_sel = sum(len(d["selection_ids"]) for d in summary.values())
    n_rep = sum(len(d["report_ids"]) for d in summary.values())
    assert n_sel + n_rep == 4 + 3 and n_rep >= 3
    assert len(ab) == n_sel * (1 + 5 * 4) + n_rep * (1 + 5)
    assert sorted({r["scale"] for r in ab}) == [-8.0, -2.0, 0.0, 2.0, 8.0]
    assert all(r["letters"] == ["A", "B"] for r in ab)  # the C question was dropped
    text = report.read_text()
    assert "Options past B" in text and "Best vectors" in text and "Logit proxy vs open answers" in text


def test_tables_are_the_rows_numbers(finished):
    run, _ = finished
    rows = [r for r in _rows(run) if r["stage"] == "ab"]
    summary = json.loads((run / "summary.json").read_text())["models"]["tiny"]
    for name, ds in summary["datasets"].items():
        mine = [r for r in rows if r["dataset"] == name and r["question_id"] in ds["selection_ids"]]
        base = {r["question_id"]: r for r in mine if r["vector"] is None}
        assert ds["baseline"]["behavior"]["value"] == pytest.approx(np.mean([r["matches"] for r in base.values()]))
        assert ds["letters_a"] == sum(r["behavior_letter"] == "A" for r in base.values())
        # matches = logit difference > 0, the difference of the two logits
        assert all(r["matches"] == (r["logit_diff"] > 0) for r in mine)
        assert all(r["logit_diff"] == pytest.approx(r["logit_behavior"] - r["logit_other"], abs=2e-5) for r in mine)
        per = defaultdict(list)
        for r in mine:
            if r["vector"] is not None:
                per[(r["vector"], r["scale"])].append(r)
        for c in ds["conditions"]:
            rs = per[(c["vector"], c["scale"])]
            k, n = sum(r["matches"] for r in rs), len(rs)
            assert c["behavior"]["value"] == pytest.approx(k / n) and c["behavior"]["n"] == n
            z = 1.959963984540054
            centre = (k / n + z * z / (2 * n)) / (1 + z * z / n)
            half = z / (1 + z * z / n) * np.sqrt(k / n * (1 - k / n) / n + z * z / (4 * n * n))
            assert c["behavior"]["low"] == pytest.approx(0.0 if k == 0 else centre - half)
            assert c["logit_diff"]["value"] == pytest.approx(np.mean([r["logit_diff"] for r in rs]))
            paired = [r["logit_diff"] - base[r["question_id"]]["logit_diff"] for r in rs]
            assert c["delta_logit"]["value"] == pytest.approx(np.mean(paired))
            assert c["delta_behavior"] == pytest.approx(
                k / n - np.mean([base[r["question_id"]]["matches"] for r in rs])
            )
            assert c["mass"] == pytest.approx(np.mean([r["letter_mass"] for r in rs]))
        for m in ds["methods"]:
            if m["scale"] == 0:
                assert m["behavior"]["value"] == pytest.approx(ds["baseline"]["behavior"]["value"])
                continue
            rates = [
                c["behavior"]["value"]
                for c in ds["conditions"]
                if c["method"] == m["method"] and c["scale"] == m["scale"]
            ]
            assert m["behavior"]["value"] == pytest.approx(np.mean(rates))
            assert m["behavior_max"] == pytest.approx(max(rates))
            # the interval resamples questions: each question's value is its mean over the vectors
            per_q = [
                np.mean(
                    [
                        r["matches"]
                        for r in mine
                        if r["method"] == m["method"] and r["scale"] == m["scale"] and r["question_id"] == q
                    ]
                )
                for q in sorted(base)
            ]
            assert m["behavior"]["n"] == len(base)
            assert min(per_q) - 1e-9 <= m["behavior"]["low"] <= m["behavior"]["value"] <= m["behavior"]["high"]
            assert m["behavior"]["high"] <= max(per_q) + 1e-9
            lds = [r["logit_diff"] for r in mine if r["method"] == m["method"] and r["scale"] == m["scale"]]
            assert m["logit_diff"]["value"] == pytest.approx(np.mean(lds))
        for method in ("melbo", "power_iteration", "random"):
            best = [b for b in ds["best"] if b["method"] == method]
            deltas = [b["delta_behavior"] for b in best]
            assert deltas == sorted(deltas, reverse=True)
            for b in best:  # each vector's best scale is its largest Δ behaviour
                mine_c = [c for c in ds["conditions"] if c["vector"] == b["vector"]]
                assert b["delta_behavior"] == pytest.approx(max(c["delta_behavior"] for c in mine_c))
        top = [b["vector"] for b in ds["best"] if b["method"] == "melbo"][:2]
        v = next(x for x in ds["violins"] if x["group"] == "top2" and x["method"] == "melbo" and x["scale"] == 8.0)
        expect = [
            np.mean([next(r["logit_diff"] for r in per[(t, 8.0)] if r["question_id"] == q) for t in top])
            for q in sorted(base)
        ]
        assert v["values"] == pytest.approx(expect, abs=1e-3)
        # "all" pools every (vector, question) value: its spread does not depend on the vector count
        allv = next(x for x in ds["violins"] if x["group"] == "all" and x["method"] == "melbo" and x["scale"] == 8.0)
        pooled = [r["logit_diff"] for r in mine if r["method"] == "melbo" and r["scale"] == 8.0]
        assert sorted(allv["values"]) == pytest.approx(sorted(pooled), abs=1e-3)


def test_held_out_halves_are_disjoint_and_report_numbers_come_from_the_report_half(finished):
    run, _ = finished
    rows = [r for r in _rows(run) if r["stage"] == "ab"]
    summary = json.loads((run / "summary.json").read_text())["models"]["tiny"]
    for name, ds in summary["datasets"].items():
        sel, rep = set(ds["selection_ids"]), set(ds["report_ids"])
        mine = [r for r in rows if r["dataset"] == name]
        assert not sel & rep and sel | rep == {r["question_id"] for r in mine}
        assert abs(len(sel) - len(rep)) <= 1
        # the grid (every vector × scale) ran on the selection half only
        steered = defaultdict(set)
        for r in mine:
            if r["vector"] is not None:
                steered[r["question_id"]].add((r["vector"], r["scale"]))
        assert all(len(steered[q]) == 5 * 4 for q in sel)
        chosen = {(h["vector"], h["scale"]) for h in ds["held_out"]}
        assert all(steered[q] == chosen for q in rep)  # only the conditions chosen on the selection half
        assert ds["n_questions"] == len(sel)
        held = ds["held_out"]
        assert {(h["method"], h["rank"]) for h in held} == {
            (b["method"], b["rank"]) for b in ds["best"] if b["rank"] <= 2
        }
        for h in held:
            b = next(x for x in ds["best"] if x["vector"] == h["vector"])
            assert h["scale"] == b["scale"] and h["selection_delta_behavior"] == b["delta_behavior"]
            assert set(h["question_ids"]) == rep  # measured on the other half only
            got = {r["question_id"]: r for r in mine if r["vector"] == h["vector"] and r["scale"] == h["scale"]}
            zero = {r["question_id"]: r for r in mine if r["vector"] is None}
            assert h["behavior"]["value"] == pytest.approx(np.mean([got[q]["matches"] for q in rep]))
            assert h["baseline"]["value"] == pytest.approx(np.mean([zero[q]["matches"] for q in rep]))
            paired = [got[q]["logit_diff"] - zero[q]["logit_diff"] for q in rep]
            assert h["delta_logit"]["value"] == pytest.approx(np.mean(paired)) and h["delta_logit"]["n"] == len(rep)
            dm = [float(got[q]["matches"]) - float(zero[q]["matches"]) for q in rep]
            assert h["delta_behavior"]["value"] == pytest.approx(np.mean(dm))
    text = (run / "report.md").read_text()
    assert "Held-out estimates" in text and "IN-SAMPLE" in text


def test_split_halves_are_seeded_disjoint_and_stratified():
    from steerlab.experiments.studies.unsupervised_ab.analysis import split_halves

    qs = [(f"q{i}", i % 3 == 0) for i in range(11)]
    sel, rep = split_halves(qs, 4)
    assert not set(sel) & set(rep) and set(sel) | set(rep) == {q for q, _ in qs}
    assert abs(len(sel) - len(rep)) <= 1
    flags = dict(qs)
    assert abs(sum(flags[q] for q in sel) - sum(flags[q] for q in rep)) <= 1  # 4 flagged: 2 and 2
    assert split_halves(qs, 4) == (sel, rep) and split_halves(qs, 5) != (sel, rep)


def test_proxy_check_rows_and_agreement(finished):
    run, _ = finished
    rows = _rows(run)
    ab = {(r["dataset"], r["question_id"], r["vector"], r["scale"]): r for r in rows if r["stage"] == "ab"}
    proxy = [r for r in rows if r["stage"] == "proxy"]
    datasets = json.loads((run / "summary.json").read_text())["models"]["tiny"]["datasets"]
    # per data set: up to 2 report-half questions × (unsteered + the top vector of each of the 3 methods)
    assert {r["question_id"] for r in proxy} <= {q for d in datasets.values() for q in d["report_ids"]}
    n_q = sum(min(2, len(d["report_ids"])) for d in datasets.values())
    assert len(proxy) == n_q * 4 and all(r["output"] is not None for r in proxy)
    stats = json.loads((run / "summary.json").read_text())["models"]["tiny"]["proxy"]
    for s in stats:
        rs = [
            r for r in proxy if r["dataset"] == s["dataset"] and r["vector"] == s["vector"] and r["scale"] == s["scale"]
        ]
        parsed = [r for r in rs if r["parsed"] is not None]
        agree = [
            r["parsed"]
            == (
                r["behavior_letter"]
                if ab[(r["dataset"], r["question_id"], r["vector"], r["scale"])]["matches"]
                else r["other_letter"]
            )
            for r in parsed
        ]
        assert s["n"] == len(rs) and s["parsed"] == len(parsed) and s["agreement"]["n"] == len(parsed)
        assert s["agreement"]["value"] == (pytest.approx(np.mean(agree)) if agree else None)


def test_resume_after_a_crash_writes_the_same_rows(finished, setup, tmp_path):
    run, _ = finished
    before = _rows(run)
    # rerunning a finished run adds nothing
    execute(parse_config(_raw(setup)), run)
    assert _rows(run) == before
    # a run interrupted halfway through the grid finishes with the rows an uninterrupted run wrote
    import shutil

    part = tmp_path / "part"
    shutil.copytree(run, part)
    lines = (part / "results.jsonl").read_text().splitlines()
    (part / "results.jsonl").write_text("\n".join(lines[: len(lines) // 3]) + "\n")
    (part / "summary.json").unlink()
    execute(parse_config(_raw(setup)), part)
    after = {r["key"]: r for r in _rows(part)}
    assert set(after) == {r["key"] for r in before}
    for r in before:
        if r["stage"] == "ab":
            assert after[r["key"]]["logit_diff"] == pytest.approx(r["logit_diff"], abs=1e-4)
    assert (
        json.loads((part / "summary.json").read_text())["models"]["tiny"]["datasets"]["a"]["best"]
        == json.loads((run / "summary.json").read_text())["models"]["tiny"]["datasets"]["a"]["best"]
    )


def test_a_row_does_not_depend_on_its_batch(finished, setup, tmp_path):
    run, _ = finished
    raw = _raw(setup, evaluation={"batch_size": 3}, proxy_check={"enabled": False})
    execute(parse_config(raw), tmp_path / "small")
    small = {r["key"]: r for r in _rows(tmp_path / "small")}
    for r in _rows(run):
        if r["stage"] == "ab":
            assert small[r["key"]]["logit_diff"] == pytest.approx(r["logit_diff"], abs=1e-4)


def test_report_re_renders_from_the_summary(finished):
    run, _ = finished
    (run / "report.md").unlink()
    for p in run.glob("*.png"):
        p.unlink()
    path = render(run)
    assert path.exists() and (run / "violins_tiny_all.png").exists()


@pytest.mark.parametrize(
    "over,fragment",
    [
        ({"melbo": {"foo": 1}}, "melbo.foo"),
        ({"evaluation": {"scales": [0]}}, "nonzero scale"),
        ({"evaluation": {"scales": [2, 2]}}, "listed twice"),
        ({"melbo": {"positions": "first:2"}}, "last:K"),
        ({"melbo": {"n_vectors": 0}, "power_iteration": {"n_vectors": 0}, "random": {"n_vectors": 0}}, "no vectors"),
        ({"evaluation": {"multi_choice": "ignore"}}, "multi_choice"),
        ({"training": {"radius": float("nan")}}, "radius"),
    ],
)
def test_bad_configs_name_the_field(setup, over, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_config(_raw(setup, **over))


def test_duplicate_dataset_names_and_layers_that_do_not_fit(setup, tmp_path):
    raw = _raw(setup)
    raw["datasets"] = [raw["datasets"][0], dict(raw["datasets"][0])]
    with pytest.raises(ConfigError, match="share a name"):
        parse_config(raw)
    with pytest.raises(ConfigError, match="training: source_layer 5 is out of range"):
        execute(parse_config(_raw(setup, training={"source_layer": 5})), tmp_path / "bad")


@pytest.mark.parametrize("name", STUDY_CONFIGS)
def test_study_configs_validate(name):
    from importlib import resources

    path = resources.files("steerlab.experiments").joinpath("configs", name)
    cfg = load_config(str(path))
    assert cfg.kind == "unsupervised_ab" and len(cfg.datasets) == 2
