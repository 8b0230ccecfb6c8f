"""The expected rating from the answer-token distribution equals a by-hand softmax over the same logits."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_lm
from steerlab.models.option_scores import _cache_kwarg  # the cache argument this transformers takes
from steerlab.prefs.answers import choice_probabilities, rating_distributions
from steerlab.prefs.templates import rating_template


def _by_hand(lm, conv, template):
    """Expected rating and entropy from full-vocabulary log-softmaxes: the prompt runs once
    (unpadded), and each spelling of each answer continues from a copy of its key-value cache."""
    import copy

    prompt = lm.format(conv)
    p_ids = lm.tokenizer(prompt, add_special_tokens=not lm.chat.uses_template)["input_ids"]
    with torch.no_grad():
        out = lm.model(input_ids=torch.tensor([p_ids]), logits_to_keep=1, use_cache=True)
    first = torch.log_softmax(out.logits[0, -1].float(), -1)  # next-token log-probs after the prompt
    logq = {v: [] for v in template.scale.values}
    for text, v in template.options().items():
        for spelled in (" " + text, text):
            ids = lm.tokenizer(prompt + spelled, add_special_tokens=not lm.chat.uses_template)["input_ids"][
                len(p_ids) :
            ]
            total = float(first[ids[0]])
            if len(ids) > 1:
                with torch.no_grad():
                    more = (
                        lm.model(
                            input_ids=torch.tensor([ids[:-1]]),
                            **{_cache_kwarg(type(lm.model)): copy.deepcopy(out.past_key_values)},
                            use_cache=True,
                        )
                        .logits[0]
                        .float()
                    )
                lp = torch.log_softmax(more, -1)  # row j: the distribution of ids[j + 1]
                total += sum(float(lp[j, t]) for j, t in enumerate(ids[1:]))
            logq[v].append(total)
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
