"""The expected rating from the answer-token distribution equals a by-hand softmax over the same logits."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_lm

from steerlab.prefs.answers import choice_probabilities, rating_distributions
from steerlab.prefs.templates import rating_template


def _by_hand(lm, conv, template):
    """Expected rating and entropy from full-vocabulary logits of one unpadded forward per spelling."""
    prompt = lm.format(conv)
    p_ids = lm.tokenizer(prompt, add_special_tokens=not lm.chat.uses_template)["input_ids"]
    logq = {v: [] for v in template.scale.values}
    for text, v in template.options().items():
        for spelled in (" " + text, text):
            ids = lm.tokenizer(prompt + spelled, add_special_tokens=not lm.chat.uses_template)["input_ids"][len(p_ids):]
            with torch.no_grad():
                logits = lm.model(input_ids=torch.tensor([p_ids + ids])).logits[0].float()
            lp = torch.log_softmax(logits, -1)  # a full softmax at every position
            logq[v].append(sum(float(lp[len(p_ids) - 1 + j, t]) for j, t in enumerate(ids)))
    q = torch.tensor([float(torch.logsumexp(torch.tensor(logq[v]), 0)) for v in template.scale.values])
    p = torch.softmax(q, 0)
    values = torch.tensor(template.scale.values)
    return float((p * values).sum()), float(-(p * p.log()).sum()), float(q.exp().sum())


def test_expected_rating_equals_by_hand_softmax_tiny():
    lm = tiny_lm("qwen2")
    t = rating_template("anchored_1_5")
    convs = [t.conversation("Add 2 and 3.", "5"), t.conversation("Name a colour.", "Blue", context="You hate colours.")]
    for conv, d in zip(convs, rating_distributions(lm, convs, t)):
        expected, entropy, mass = _by_hand(lm, conv, t)
        assert d.expected == pytest.approx(expected, abs=1e-4)
        assert d.entropy == pytest.approx(entropy, abs=1e-4)
        assert d.scale_mass == pytest.approx(mass, rel=1e-3)
        assert sum(d.probs) == pytest.approx(1.0)


def test_choice_probability_by_hand_tiny():
    lm = tiny_lm("llama")
    conv = [{"role": "user", "content": "Task A: x\n\nTask B: y\n\nWhich? Respond with only 'A' or 'B'."}]
    got = choice_probabilities(lm, [conv])[0]
    lp = lm.option_logprobs([conv], ["A", "B"])[0]
    assert got.p_first == pytest.approx(math.exp(lp["A"]) / (math.exp(lp["A"]) + math.exp(lp["B"])))


@pytest.mark.slow
def test_expected_rating_equals_by_hand_softmax_default_model(default_lm):
    t = rating_template("anchored_precise_1_5")
    conv = t.conversation("What is 17 multiplied by 23?", "17 times 23 is 391.")
    d = rating_distributions(default_lm, [conv], t)[0]
    expected, entropy, _mass = _by_hand(default_lm, conv, t)
    assert d.expected == pytest.approx(expected, abs=1e-3)
    assert d.entropy == pytest.approx(entropy, abs=1e-3)
    assert 1 <= d.expected <= 5 and 0 < d.scale_mass <= 1
