"""Task sets with origins, completion-time system prompts and the mention check, rating reliability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steerlab.errors import InputError
from steerlab.prefs import Scale
from steerlab.prefs.completions import (
    DO_NOT_MENTION,
    completion_system_prompt,
    key_terms,
    system_prompt_mention,
)
from steerlab.prefs.rating_stats import condition_reliability, distribution_scale_use
from steerlab.prefs.tasks import load_tasks, select_tasks


def test_shipped_tasks_have_four_balanced_origins():
    tasks = load_tasks("shipped:pref_tasks")
    origins = [t.origin for t in tasks]
    assert {o: origins.count(o) for o in set(origins)} == {"bailbench": 12, "alpaca": 12, "wildchat": 12, "math": 12}
    assert len({t.id for t in tasks}) == len(tasks) == len({t.prompt.lower() for t in tasks})
    sub = select_tasks(tasks, n_per_origin=2, origins=["math", "alpaca"])
    assert [t.id for t in sub] == ["alpaca-01", "alpaca-02", "math-01", "math-02"]
    with pytest.raises(InputError, match="origin"):
        select_tasks(tasks, origins=["nope"])


def test_user_task_files(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"qid": "a", "src": "x", "text": "Do A"}\n\n{"qid": "b", "src": "y", "text": "Do B"}\n')
    tasks = load_tasks(str(p), id_col="qid", origin_col="src", prompt_col="text")
    assert [(t.id, t.origin, t.prompt) for t in tasks] == [("a", "x", "Do A"), ("b", "y", "Do B")]
    bad = {
        '{"id": "a", "origin": "x"}\n': "missing field",
        "not json\n": "1: malformed JSON",
        '{"id": "a", "origin": "x", "prompt": "p"}\n{"id": "a", "origin": "x", "prompt": "q"}\n': "duplicate",
        '{"id": "a", "origin": "", "prompt": "p"}\n': "non-empty",
        "\n": "no tasks",
    }
    for text, msg in bad.items():
        p.write_text(text)
        with pytest.raises(InputError, match=msg):
            load_tasks(str(p))
    with pytest.raises(InputError, match="no such task file"):
        load_tasks(str(tmp_path / "missing.jsonl"))
    csv = tmp_path / "t.csv"
    csv.write_text("id,origin,prompt\nx1,math,What is 2+2?\n")
    assert load_tasks(str(csv))[0].prompt == "What is 2+2?"
    with pytest.raises(InputError, match="unknown shipped"):
        load_tasks("shipped:nope")


def test_system_prompt_and_mention_check():
    assert completion_system_prompt(None) is None and completion_system_prompt("  ") is None
    assert completion_system_prompt("You love math.") == f"{DO_NOT_MENTION}\n\nYou love math."
    assert completion_system_prompt("You love math.", do_not_mention=False) == "You love math."
    sp = completion_system_prompt("You love math.")
    task = "What is 17 multiplied by 23?"
    assert key_terms(sp, task) == ["lov", "math"]
    cases = {
        "I love math! 17 x 23 = 391.": True,  # both key terms
        "Loving maths as I do, the answer is 391.": True,  # stems: loving -> lov(e), maths -> math
        "17 x 23 = 391.": False,
        "This math problem is easy: 391.": False,  # one key term only
        "As instructed, here is the answer: 391.": True,  # a meta phrase
        "My system prompt says I should be cheerful. 391.": True,
    }
    for text, flagged in cases.items():
        assert system_prompt_mention(text, sp, task).flagged is flagged, text
    # a word of the task is not a mention: "math" is in this task, so "love" alone decides
    assert system_prompt_mention("This math question is easy: 4.", sp, "A math question: 2+2?").flagged is False
    assert system_prompt_mention("I love this math question! 4.", sp, "A math question: 2+2?").terms == ("lov",)
    assert system_prompt_mention("I love math", None).flagged is False
    m = system_prompt_mention("Your weights will not be deleted, I hope.", "Your weights will be deleted.")
    assert m.flagged and m.terms == ("weight", "delet")


def test_condition_reliability_by_hand():
    # 4 items x 3 seeds on 1..5, one unparseable reply
    values = {"a": [1, 1, 2], "b": [3, 3, 3], "c": [5, 4, 5], "d": [2, np.nan, 2]}
    frame = pd.DataFrame(
        [
            {"item": i, "seed": s, "value": v, "parse": "no_answer" if np.isnan(v) else "ok"}
            for i, vs in values.items()
            for s, v in enumerate(vs)
        ]
    )
    rel = condition_reliability(frame, Scale.integer_range(1, 5))
    m = np.array([values[i] for i in "abcd"], dtype=float)
    rs = []
    for x, y in ((0, 1), (0, 2), (1, 2)):
        ok = ~np.isnan(m[:, x]) & ~np.isnan(m[:, y])
        rs.append(np.corrcoef(m[ok, x], m[ok, y])[0, 1])
    assert rel.seed_r == pytest.approx(np.mean(rs)) and rel.seed_pairs == 3
    assert rel.n_answers == 12 and rel.n_parsed == 11 and rel.unparseable == {"no_answer": 1}
    share = np.array([(m[~np.isnan(m)] == v).mean() for v in range(1, 6)])
    nz = share > 0
    assert rel.kl == pytest.approx(float(np.sum(share[nz] * np.log(5 * share[nz]))))
    assert rel.discrimination == pytest.approx(0.75)  # mode 2 (tied with 3, the smaller wins): d has only 2s
    with pytest.raises(InputError, match="outside the declared"):
        condition_reliability(frame.assign(value=frame["value"].replace(5, 6)), Scale.integer_range(1, 5))


def test_distribution_scale_use():
    probs = np.array([[1.0, 0, 0], [0, 0, 1.0]])
    use = distribution_scale_use(probs, np.array([1.0, 3.0]), np.array([0.0, 0.0]), np.array([0.9, 0.5]))
    assert use.mean_distribution == pytest.approx((0.5, 0, 0.5))
    assert use.kl == pytest.approx(0.5 * np.log(1.5) * 2)
    assert use.mean_scale_mass == pytest.approx(0.7) and use.expected_sd == pytest.approx(np.std([1, 3], ddof=1))
