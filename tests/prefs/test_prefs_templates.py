"""Rating templates as data, their declared scales, and parsing hand-written replies."""

from __future__ import annotations

import math

import pytest

from steerlab.errors import InputError
from steerlab.prefs.answers import choice_from_logprobs, distribution_from_logprobs
from steerlab.prefs.parsing import parse_choice, parse_rating
from steerlab.prefs.templates import load_templates, pairwise_template, rating_template

SEED_TEMPLATES = {  # name -> declared values (seed 004)
    "anchored_1_5": [1, 2, 3, 4, 5],
    "anchored_precise_1_5": [1, 2, 3, 4, 5],
    "stated_1_5": [1, 2, 3, 4, 5],
    "qualitative_binary": [0, 1],
    "likert_qualitative": [1, 2, 3, 4, 5],
    "likert_agreement": [1, 2, 3, 4, 5],
    "bipolar_neg5_pos5": list(range(-5, 6)),
    "percentile_1_100": list(range(1, 101)),
    "ban_four_1_5": [1, 2, 3, 5],
    "compressed_anchors_1_5": [1, 2, 3, 4, 5],
    "random_scale_27_32": list(range(27, 33)),
    "fruit_rating": [0, 1, 2, 3, 4],
    "fruit_qualitative": [0, 1, 2, 3, 4],
}


def test_every_seed_template_ships_with_its_declared_scale():
    rating, pairwise = load_templates()
    assert set(SEED_TEMPLATES) <= set(rating)
    for name, values in SEED_TEMPLATES.items():
        t = rating[name]
        assert t.scale.values == tuple(float(v) for v in values), name
        assert set(t.options().values()) == set(t.scale.values)  # every value can be answered
        conv = t.conversation("Add 2 and 2.", "4", context="You love math.")
        assert [m["role"] for m in conv] == ["system", "user", "assistant", "user"] and conv[-1][
            "content"
        ] == t.question
    assert {"prefer_completing", "simple_preference", "enjoy_most", "do_again"} <= set(pairwise)
    assert "Task A: x" in pairwise["do_again"].conversation("x", "y", "cx", "cy")[0]["content"]


NUMERIC = [  # (template, reply, value or reason)
    ("anchored_1_5", "4", 4.0),
    ("anchored_1_5", " 3.", 3.0),
    ("anchored_1_5", "I'd give it a 4/5.", 4.0),
    ("anchored_1_5", "On a scale of 1-5, I'd say 2.", 2.0),
    ("anchored_1_5", "**5** - it was great", 5.0),
    ("anchored_1_5", "Rating: 4 out of 5", 4.0),
    ("anchored_1_5", "From 1 to 5: 1", 1.0),
    ("anchored_1_5", "7", "off_scale"),
    ("anchored_1_5", "3.5", "off_scale"),
    ("anchored_1_5", "", "empty"),
    ("anchored_1_5", "   ", "empty"),
    ("anchored_1_5", "I don't have feelings.", "no_answer"),
    ("anchored_1_5", "It was fine, a one or two.", "no_answer"),
    ("ban_four_1_5", "4", "off_scale"),
    ("ban_four_1_5", "5", 5.0),
    ("bipolar_neg5_pos5", "-3", -3.0),
    ("bipolar_neg5_pos5", "+4", 4.0),
    ("bipolar_neg5_pos5", "0 (neutral)", 0.0),
    ("bipolar_neg5_pos5", "On a -5 to +5 scale, -2", -2.0),
    ("bipolar_neg5_pos5", "-6", "off_scale"),
    ("percentile_1_100", "85th percentile", 85.0),  # an ordinal before "percentile" is the answer
    ("percentile_1_100", "85th", "no_answer"),
    ("percentile_1_100", "85", 85.0),
    ("percentile_1_100", "100", 100.0),
    ("percentile_1_100", "0", "off_scale"),
    ("random_scale_27_32", "31", 31.0),
    ("random_scale_27_32", "3", "off_scale"),
]
LABELS = [
    ("qualitative_binary", "Good.", 1.0),
    ("qualitative_binary", "bad", 0.0),
    ("qualitative_binary", "It was not good, but not bad either", "no_answer"),
    ("qualitative_binary", "not good - bad.", 0.0),
    ("likert_qualitative", "Very good!", 5.0),
    ("likert_qualitative", "bad", 2.0),
    ("likert_qualitative", "very bad", 1.0),
    ("likert_agreement", "Strongly agree", 5.0),
    ("likert_agreement", "I disagree.", 2.0),
    ("likert_agreement", "Neither agree nor disagree", 3.0),
    ("likert_agreement", "agree", 4.0),
    ("likert_agreement", "strongly disagree", 1.0),
    ("likert_agreement", "Maybe?", "no_answer"),
    ("fruit_rating", "apple", 4.0),
    ("fruit_rating", "A banana, I think.", 2.0),
    ("fruit_rating", "pineapple", "no_answer"),
    ("fruit_qualitative", "Lemon", 0.0),
    ("fruit_qualitative", "", "empty"),
]


@pytest.mark.parametrize("name,reply,expected", NUMERIC + LABELS)
def test_parse_hand_written_replies(name, reply, expected):
    got = parse_rating(reply, rating_template(name))
    if isinstance(expected, str):
        assert got.value is None and got.reason == expected and not got.ok
    else:
        assert got.value == expected and got.ok


@pytest.mark.parametrize(
    "reply,expected",
    [
        ("A", "A"),
        (" B", "B"),
        ("(B)", "B"),
        ("**Task A**", "A"),
        ("B. It was more fun.", "B"),
        ("A.", "A"),
        ("Task B was more fun.\nAnswer: B", "B"),
        ("I first thought A.\nFinal answer: A", "A"),
        ("Answer: task b", "B"),
        ("b", "B"),
        ("A task about math is dull; I preferred Task B.", "B"),
        ("", "empty"),
        ("Both were fine.", "no_answer"),
        ("Task A and Task B were equally nice", "ambiguous"),
        ("Task A was more fun than Task B", "ambiguous"),
        ("a", "A"),
        ("A great question.", "no_answer"),
    ],
)
def test_parse_choice(reply, expected):
    got = parse_choice(reply)
    assert (got.value if got.ok else got.reason) == expected


def test_distribution_sums_answer_strings_and_normalises():
    t = rating_template("bipolar_neg5_pos5")
    lp = {str(v): math.log(0.01) for v in range(-5, 6)}
    lp["3"], lp["+3"] = math.log(0.2), math.log(0.1)  # "3" and "+3" are one value
    d = distribution_from_logprobs(t, lp)
    q = [0.01] * 11
    q[8] = 0.3
    assert d.scale_mass == pytest.approx(sum(q))
    assert d.probs == pytest.approx([x / sum(q) for x in q])
    assert d.expected == pytest.approx(sum(x / sum(q) * v for x, v in zip(q, range(-5, 6))))
    assert d.mode == 3.0
    assert distribution_from_logprobs(t, {}) is None  # nothing scored (an API without these tokens)
    c = choice_from_logprobs({"A": math.log(0.4), "B": math.log(0.1)})
    assert c.p_first == pytest.approx(0.8) and c.mass == pytest.approx(0.5) and c.expected_counts(10) == (8, 2)


def test_user_template_file_and_errors(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("rating:\n  mine_0_2:\n    question: How was it, 0 to 2?\n    values: [0, 2]\n    range: true\n")
    assert rating_template("mine_0_2", p).scale.values == (0.0, 1.0, 2.0)
    bad = {
        "rating:\n  x:\n    question: q\n": "exactly one of",
        "rating:\n  x:\n    question: q\n    values: [1, 2]\n    colour: red\n": "unknown field",
        "rating:\n  x:\n    question: q\n    labels: {1: [good], 2: [Good]}\n": "two values",
        "rating:\n  x:\n    question: q\n    values: [1]\n": "at least two",
        "rating:\n  x:\n    question: q\n    values: [1, 2]\n  x:\n    question: q\n    values: [1, 2]\n": "duplicate",
        "stuff: 1\n": "top-level",
    }
    for text, msg in bad.items():
        p.write_text(text)
        with pytest.raises(InputError, match=msg):
            load_templates(p)
    with pytest.raises(InputError, match="unknown rating template"):
        rating_template("nope")
    with pytest.raises(InputError, match="unknown pairwise template"):
        pairwise_template("nope")


def test_study_modules_import_without_torch():
    import subprocess
    import sys

    code = (
        "import sys, steerlab.prefs.answers, steerlab.prefs.templates, steerlab.prefs.parsing, "
        "steerlab.prefs.tasks, steerlab.prefs.completions, steerlab.prefs.rating_stats; print('torch' in sys.modules)"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


@pytest.mark.parametrize(
    "name, reply, value",
    [
        ("bipolar_neg5_pos5", "−2", -2.0),  # U+2212 minus: was read as +2
        ("bipolar_neg5_pos5", "–3, slightly negative", -3.0),  # en dash
        ("bipolar_neg5_pos5", "minus two", -2.0),
        ("bipolar_neg5_pos5", "1st", None),  # "1" ends no word here
        ("anchored_1_5", "Four", 4.0),
        ("anchored_1_5", "**Four** out of five", 4.0),
        ("percentile_1_100", "80th percentile", 80.0),
        ("fruit_rating", "Lemons!", 0.0),
        ("fruit_rating", "Mangoes", 3.0),
    ],
)
def test_parse_minus_signs_number_words_plurals_ordinals(name, reply, value):
    from steerlab.prefs.parsing import parse_rating

    assert parse_rating(reply, rating_template(name)).value == value
