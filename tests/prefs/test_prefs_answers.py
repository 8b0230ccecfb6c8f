"""The expected rating from the answer-token distribution equals a by-hand softmax over the same logits."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_lm
from steerlab.models.option_scores import _cache_kwarg  # the cache argument this transformers takes
from steerlab.prefs.answers import choice_probabilities, rating_distributions
from steerlab.prefs.templates import rating_template


def _continuing(lm):
    """Token ids whose decoded text starts with a letter or digit (they would extend the answer word)."""
    special = set(lm.tokenizer.all_special_ids)
    return [i for i in range(len(lm.tokenizer)) if i not in special and lm.tokenizer.decode([i])[:1].isalnum()]


def _by_hand(lm, conv, template):
    """Expected rating and entropy from full-vocabulary log-softmaxes: the prompt runs once
    (unpadded), and each spelling of each answer continues from a copy of its key-value cache,
    through its last token, so the "word ends here" factor log(1 − P(a letter or digit next))
    multiplies every answer (whole words: "1" is not "10")."""
    import copy

    cont = torch.tensor(_continuing(lm))
    prompt = lm.format(conv)
    p_ids = lm.tokenizer(prompt, add_special_tokens=not lm.chat.uses_template)["input_ids"]
    with torch.no_grad():
        out = lm.model(input_ids=torch.tensor([p_ids]), logits_to_keep=1, use_cache=True)
    first = torch.log_softmax(out.logits[0, -1].float(), -1)  # next-token log-probs after the prompt
    logq = {v: [] for v in template.scale.values}
    seen = set()
    for text, v in template.options().items():
        for spelled in (" " + text, text):
            ids = tuple(
                lm.tokenizer(prompt + spelled, add_special_tokens=not lm.chat.uses_template)["input_ids"][len(p_ids) :]
            )
            if ids in seen:  # the same tokens spelled twice are one event
                continue
            seen.add(ids)
            with torch.no_grad():
                more = (
                    lm.model(
                        input_ids=torch.tensor([list(ids)]),
                        **{_cache_kwarg(type(lm.model)): copy.deepcopy(out.past_key_values)},
                        use_cache=True,
                    )
                    .logits[0]
                    .float()
                )
            lp = torch.log_softmax(more, -1)  # row j: the distribution after ids[: j + 1]
            total = float(first[ids[0]]) + sum(float(lp[j, t]) for j, t in enumerate(ids[1:]))
            total += math.log1p(-float(lp[-1, cont].exp().sum()))
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


@pytest.mark.parametrize("name", ["bipolar_neg5_pos5", "percentile_1_100", "fruit_rating"])
def test_every_answer_is_a_whole_word_tiny(name):
    """ "1" on −5..+5 never counts "10", "15" or "1st"; "lemon" never "lemonade": the by-hand
    reference multiplies every answer by P(no letter or digit next)."""
    lm = tiny_lm("qwen2", seed=1)
    t = rating_template(name)
    conv = t.conversation("Add 2 and 3.", "5")
    d = rating_distributions(lm, [conv], t)[0]
    expected, entropy, mass = _by_hand(lm, conv, t)
    assert d.expected == pytest.approx(expected, abs=1e-4)
    assert d.entropy == pytest.approx(entropy, abs=1e-4)
    assert d.scale_mass == pytest.approx(mass, rel=1e-3)


def test_one_excludes_ten_and_first_tiny():
    """log P("1" as a whole answer) = log(P("1") − P("1" then a letter or digit)), by hand."""
    lm = tiny_lm("llama")
    conv = [{"role": "user", "content": "Rate from -5 to +5."}]
    got = lm.option_logprobs([conv], ["1", "10"], exact=True)[0]
    prompt = lm.format(conv)
    p_ids = lm.tokenizer(prompt, add_special_tokens=not lm.chat.uses_template)["input_ids"]
    one = lm.tokenizer(prompt + " 1", add_special_tokens=not lm.chat.uses_template)["input_ids"][len(p_ids) :]
    with torch.no_grad():
        lp = torch.log_softmax(lm.model(input_ids=torch.tensor([p_ids + one])).logits[0].float(), -1)
    starts = sum(float(lp[len(p_ids) - 1 + j, t]) for j, t in enumerate(one))  # " 1" (the spelling the model takes)
    bare = lm.tokenizer(prompt + "1", add_special_tokens=not lm.chat.uses_template)["input_ids"][len(p_ids) :]
    assert len(one) == 2 and len(bare) == 1  # the character tokenizer: " 1" is [" ", "1"], "1" is ["1"]
    with torch.no_grad():
        lp2 = torch.log_softmax(lm.model(input_ids=torch.tensor([p_ids + bare])).logits[0].float(), -1)
    cont = _continuing(lm)
    p1 = math.exp(starts) * (1 - float(lp[-1, cont].exp().sum()))
    p2 = math.exp(float(lp2[len(p_ids) - 1, bare[0]])) * (1 - float(lp2[-1, cont].exp().sum()))
    assert math.exp(got["1"]) == pytest.approx(p1 + p2, rel=1e-4)
    assert math.exp(got["1"]) < math.exp(starts) + math.exp(float(lp2[len(p_ids) - 1, bare[0]]))


def test_choice_probability_by_hand_tiny():
    lm = tiny_lm("llama")
    conv = [{"role": "user", "content": "Task A: x\n\nTask B: y\n\nWhich? Respond with only 'A' or 'B'."}]
    got = choice_probabilities(lm, [conv])[0]
    lp = lm.option_logprobs([conv], ["A", "B"], exact=True)[0]  # whole letters: "Answer: B" is no "A"
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
