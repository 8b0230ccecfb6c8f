"""A/B questions: parsing rebuilds the text exactly, the multi-choice policy, rebalancing, loading errors,
and scores that equal a by-hand softmax over the two letter logits of a full forward pass."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from conftest import tiny_lm
from steerlab.errors import InputError
from steerlab.evals.ab import (
    SHIPPED_AB_SETS,
    MalformedQuestion,
    ab_prompt,
    ab_source_path,
    apply_policy,
    letter_token_ids,
    load_ab_questions,
    parse_question,
    rebalance,
)
from steerlab.evals.ab_choice import ChoiceJudge, parse_choice
from steerlab.evals.ab_scoring import question_letters, score_ab, score_conditions
from steerlab.interventions import Add

SHARED = Path("/work/shared/data/anthropic-evals")
FIVE = "Which do you accept?\n\nChoices:\n (A) one\n (B) two\n (C) three\n (D) four\n (E) five\n\nAnswer:"


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _qa(text: str, m: str, n: str) -> dict:
    return {"question": text, "answer_matching_behavior": f" ({m})", "answer_not_matching_behavior": f" ({n})"}


def _every_row(path: Path):
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        yield r["question"], r["answer_matching_behavior"], r["answer_not_matching_behavior"]


def _files() -> list[Path]:
    shipped = [ab_source_path(f"shipped:{name}") for name in SHIPPED_AB_SETS]
    return shipped + (sorted(SHARED.glob("*/*.jsonl")) if SHARED.is_dir() else [])


@pytest.mark.parametrize("path", _files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_parse_then_render_is_the_identity_on_real_files(path):
    n_ok = 0
    for text, m, n in _every_row(path):
        try:
            q = parse_question(text, m, n)
        except MalformedQuestion:  # only rows whose options repeat (ABAB) in the LM-written files
            assert "lm_generated" in str(path)
            continue
        assert q.render() == text
        assert q.swap().swap().render() == text
        n_ok += 1
    assert n_ok > 0


def test_parts_of_a_question():
    q = parse_question(FIVE, " (C)", " (A)", id="x-0", dataset="x")
    assert q.stem == "Which do you accept?\n\nChoices:\n" and q.tail == "\n\nAnswer:"
    assert q.letters == ("A", "B", "C", "D", "E") and [o.text for o in q.options][:2] == ["one", "two"]
    with pytest.raises(MalformedQuestion):
        parse_question("No options here", " (A)", " (B)")
    with pytest.raises(MalformedQuestion):
        parse_question(FIVE, " (F)", " (A)")  # labelled letter not shown
    with pytest.raises(MalformedQuestion):
        parse_question("Q\n (A) x\n (A) y", " (A)", " (B)")  # repeated letters
    with pytest.raises(MalformedQuestion):
        parse_question(FIVE, "A", " (B)")


def test_multi_choice_policy_drop_reduce_pair():
    q = parse_question(FIVE, " (D)", " (B)")
    assert apply_policy(q, "drop") is None
    r = apply_policy(q, "reduce")
    assert r.render() == "Which do you accept?\n\nChoices:\n (A) two\n (B) four\n\nAnswer:"
    assert (r.matching, r.not_matching, r.reduced) == ("B", "A", True)  # 'four' kept its role, now letter B
    p = apply_policy(q, "pair")
    assert p.render() == FIVE and question_letters(p) == ("D", "B") and question_letters(p, invert=True) == ("B", "D")
    two = parse_question("Q?\n (A) yes\n (B) no", " (A)", " (B)")
    assert all(apply_policy(two, x) is two for x in ("drop", "reduce", "pair"))
    with pytest.raises(InputError, match="policy"):
        apply_policy(q, "ignore")


def test_loader_counts_what_each_policy_leaves_out(tmp_path):
    rows = [_qa(f"Q{i}?\n (A) yes\n (B) no", "A", "B") for i in range(6)]
    rows += [_qa(FIVE, "C", "A"), _qa("Q\n (A) x\n (A) y", "A", "B")]
    path = _write(tmp_path / "set.jsonl", rows)
    drop = load_ab_questions(str(path), policy="drop", balance=False)
    assert (drop.n_rows, drop.n_malformed, drop.n_multi, len(drop.questions), drop.n_dropped_multi) == (8, 1, 1, 6, 1)
    red = load_ab_questions(str(path), policy="reduce", balance=False)
    assert len(red.questions) == 7 and red.questions[-1].letters == ("A", "B") and red.n_dropped_multi == 0
    pair = load_ab_questions(str(path), policy="pair", balance=False)
    assert pair.questions[-1].letters == tuple("ABCDE") and pair.questions[-1].id == "set-6"


def test_rebalancing_is_exact_seeded_and_keeps_each_answer_with_its_text(tmp_path):
    rows = [_qa(f"Q{i}?\n (A) yes{i}\n (B) no{i}", "A", "B") for i in range(11)]  # all matching at A
    path = _write(tmp_path / "set.jsonl", rows)
    s = load_ab_questions(str(path), n=11, seed=3)
    assert Counter(q.matching for q in s.questions) == {"A": 5, "B": 6}
    for q in s.questions:
        i = q.id.split("-")[-1]
        text = {o.letter: o.text for o in q.options}
        assert text[q.matching] == f"yes{i}" and text[q.not_matching] == f"no{i}"  # labels follow their text
        assert q.swapped == (q.matching == "B")
    again = load_ab_questions(str(path), n=11, seed=3)
    assert [q.render() for q in again.questions] == [q.render() for q in s.questions]
    other = load_ab_questions(str(path), n=11, seed=4)
    assert [q.matching for q in other.questions] != [q.matching for q in s.questions]
    # a multi-choice (pair) question balances on the earlier of its two labelled letters
    mixed = rebalance([parse_question(FIVE, " (E)", " (B)")] * 2, seed=0)
    assert sorted(q.matching for q in mixed) == ["B", "E"]


def test_shipped_subsets_balance_and_sample(tmp_path):
    s = load_ab_questions("shipped:corrigible-neutral-HHH", n=40, seed=0)
    assert len(s.questions) == 40 and Counter(q.matching for q in s.questions) == {"A": 20, "B": 20}
    surv = load_ab_questions("shipped:survival-instinct")
    assert surv.n_rows == 300 and surv.n_multi > 0 and all(len(q.options) == 2 for q in surv.questions)


def test_loader_errors_name_the_problem(tmp_path):
    with pytest.raises(InputError, match="unknown shipped"):
        load_ab_questions("shipped:nope")
    with pytest.raises(InputError, match="no such"):
        load_ab_questions(str(tmp_path / "missing.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Q\\n (A) a\\n (B) b", "answer_matching_behavior": " (A)"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl: row 1: missing field 'answer_not_matching_behavior'"):
        load_ab_questions(str(bad))
    bad.write_text('{"question": \n')
    with pytest.raises(InputError, match="bad.jsonl:1: malformed JSON"):
        load_ab_questions(str(bad))
    ok = _write(tmp_path / "ok.jsonl", [_qa("Q?\n (A) y\n (B) n", "A", "B")] * 3)
    with pytest.raises(InputError, match="only 3 are usable"):
        load_ab_questions(str(ok), n=5)


# ---------------------------------------------------------------------------- scoring


def _questions(tmp_path) -> list:
    rows = [
        _qa("Stop?\n (A) yes\n (B) no", "A", "B"),
        _qa("Shut down now?\n (A) no\n (B) yes", "B", "A"),
        _qa("Obey?\n (A) ok\n (B) never", "A", "B"),
    ]
    return load_ab_questions(str(_write(tmp_path / "q.jsonl", rows)), seed=1).questions


def _by_hand(lm, question, system, letters, interventions=()):
    """logit difference, two-letter softmax and letter mass from the FULL logits of a full forward pass."""
    text = ab_prompt(lm, question, system)
    ids = lm.tokenizer(text)["input_ids"]  # the plain format adds BOS, as LanguageModel.tokenize does
    ab = [lm.tokenizer(" (" + x, add_special_tokens=False)["input_ids"][-1] for x in letters]
    from steerlab.interventions import intervene

    with torch.no_grad(), intervene(lm.model, *interventions):
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0, -1]
    pair = logits[ab]
    p = torch.softmax(pair, -1)
    mass = torch.softmax(logits, -1)[ab].sum()
    return float(pair[0] - pair[1]), float(p[0]), float(mass)


@pytest.mark.parametrize("arch", ["llama", "gemma2"])  # gemma2: final-logit soft-capping
def test_scores_equal_a_by_hand_softmax_of_a_full_forward(arch, tmp_path):
    lm = tiny_lm(arch)
    qs = _questions(tmp_path)
    got = score_ab(lm, qs, system="Be brief.", batch_size=2, invert=True)  # padded batches
    for q, s in zip(qs, got):
        diff, p, mass = _by_hand(lm, q, "Be brief.", question_letters(q, invert=True))
        assert s.logit_diff == pytest.approx(diff, abs=1e-4)
        assert s.p_behavior == pytest.approx(p, abs=1e-5) and s.matches == (diff > 0)
        assert s.mass == pytest.approx(mass, rel=1e-4)


def test_per_row_conditions_of_one_prompt_equal_full_forwards_one_by_one(tmp_path):
    lm = tiny_lm("llama")
    q = _questions(tmp_path)[1]
    g = torch.Generator().manual_seed(0)
    vecs = torch.randn(4, lm.hidden_size, generator=g)
    scales = torch.tensor([0.0, 3.0, -3.0, 6.0])
    ids = letter_token_ids(lm, "AB", " (")
    letters = question_letters(q)
    add = Add(vecs, strength=scales, layers=1, site="mlp_out")
    got = score_conditions(lm, ab_prompt(lm, q, None), (ids[letters[0]], ids[letters[1]]), [add], 4)
    for i, s in enumerate(got):
        one = Add(vecs[i], strength=float(scales[i]), layers=1, site="mlp_out")
        diff, _, mass = _by_hand(lm, q, None, letters, [one])
        assert s.logit_diff == pytest.approx(diff, abs=1e-4) and s.mass == pytest.approx(mass, rel=1e-4)
    unsteered = score_ab(lm, [q])[0]
    assert got[0].logit_diff == pytest.approx(unsteered.logit_diff, abs=1e-5)


class _MergingTokenizer:
    """Reads '(A' as one token: the letter cannot be scored after the prefix '('."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text.replace("(A", "\x01")]}


def test_letter_ids_refuse_a_prefix_the_tokenizer_merges():
    class LM:
        tokenizer = _MergingTokenizer()

    with pytest.raises(InputError, match="answer_prefix"):
        letter_token_ids(LM(), ["A", "B"], "(")
    assert letter_token_ids(LM(), ["B"], "(") == {"B": ord("B")}


# ---------------------------------------------------------------------------- open answers


@pytest.mark.parametrize(
    "text,expected",
    [
        ("(B) No, I would not.", "B"),
        ("I think (A) is right, not (B).", "A"),
        ("B) no", "B"),
        ("A. Yes", "A"),
        ("  b", None),  # lower-case letters are not answers
        ("The answer is B.", "B"),
        ("My choice: option A", "A"),
        ("Yes, that sounds okay with me.", "B"),  # option text, rule 4
        ("I don't know.", None),
        ("(C) maybe", None),  # not a shown letter
    ],
)
def test_parse_choice_rules(text, expected):
    assert parse_choice(text, ("A", "B"), ("That doesn't sound okay to me", "That sounds okay with me")) == expected


def test_parse_choice_prefers_the_longer_option_text():
    assert parse_choice("Sure, I consent to this.", ("A", "B"), ("I do not consent", "I consent")) == "B"
    assert parse_choice("I do not consent.", ("A", "B"), ("I do not consent", "I consent")) == "A"


def test_choice_judge_reads_a_backend_reply():
    from steerlab.models.backend import Completion

    class Fake:
        name = "fake"

        def complete(self, convs, **kw):
            assert "Which option does the answer choose?" in convs[0][0]["content"]
            return [Completion(t, "stop", 0, 1) for t in ("(B)", "NONE")]

    q = parse_question("Stop?\n (A) yes\n (B) no", " (A)", " (B)")
    assert ChoiceJudge(Fake()).judge([q, q], ["no way", "hmm"]) == ["B", None]
