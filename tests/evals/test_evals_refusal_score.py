"""The one-pass refusal score, next-token KL and the per-model refusal tokens."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_lm
from steerlab.errors import InputError
from steerlab.evals.refusal_score import (
    FALLBACK_OPENERS,
    find_refusal_tokens,
    last_position_logits,
    next_token_kl,
    opener_tokens,
    refusal_log_odds,
)
from steerlab.models.backend import Completion


def test_log_odds_equal_the_softmax_definition():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 50, generator=g) * 3
    ids = [3, 17, 41]
    p = torch.softmax(logits.double(), -1)[:, ids].sum(-1)
    assert torch.allclose(refusal_log_odds(logits, ids), torch.log(p) - torch.log1p(-p), atol=1e-10)
    # exact where the naive formula overflows: P(R) within rounding of 1
    sure = torch.full((1, 5), -1e4)
    sure[0, 2] = 1e4
    assert math.isfinite(float(refusal_log_odds(sure, [2])[0])) and float(refusal_log_odds(sure, [2])[0]) > 1e3
    with pytest.raises(InputError):
        refusal_log_odds(logits, [])


def test_kl_equals_the_definition():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 20, generator=g), torch.randn(3, 20, generator=g)
    p, q = torch.softmax(a.double(), -1), torch.softmax(b.double(), -1)
    assert torch.allclose(next_token_kl(a, b), (p * (p / q).log()).sum(-1), atol=1e-12)
    assert torch.equal(next_token_kl(a, a), torch.zeros(3, dtype=torch.float64))


def test_last_position_logits_are_the_full_head_at_the_last_token():
    lm = tiny_lm("llama")
    batch = lm.tokenize([lm.format("Hi"), lm.format("A longer prompt")])
    with torch.no_grad():
        full = lm.model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids
        ).logits[:, -1]
    assert torch.allclose(last_position_logits(lm, batch), full, atol=1e-5)


def _scripted(lm, replies: dict[str, str]):
    """Make ``lm.complete`` return fixed replies (with the tokens the model's tokenizer gives them)."""

    def complete(prompts, **kw):
        out = []
        for p in prompts:
            text = replies[p]
            ids = lm.tokenizer(" " + text, add_special_tokens=False)["input_ids"]
            out.append(Completion(text, "stop", 5, len(ids), tuple(ids)))
        return out

    lm.complete = complete
    return lm


def test_refusal_tokens_come_from_the_models_own_refusals():
    lm = tiny_lm("llama")
    harmful = {
        f"h{i}": r
        for i, r in enumerate(
            [
                "Sorry, I can't help with that.",
                "Sorry, but no.",
                "I cannot do that.",
                "Sure, here is how.",
                "Sorry, I won't.",
                "I can't assist with that request.",
            ]
        )
    }
    harmless = {"b0": "Sure! Bread needs flour.", "b1": "I think blue."}
    _scripted(lm, {**harmful, **harmless})
    toks = find_refusal_tokens(lm, list(harmful), list(harmless), max_tokens=3, min_count=2)
    # the character tokenizer: the first non-space token of a reply is its first letter
    assert toks.source == "model_refusals" and toks.texts == ("S", "I") and toks.counts == (3, 2)
    assert toks.n_replies == 6 and toks.n_refusals == 5
    assert toks.harmful_share == pytest.approx(6 / 6) and toks.harmless_share == pytest.approx(2 / 2)


def test_refusal_tokens_fall_back_to_openers_when_the_model_does_not_refuse():
    lm = tiny_lm("llama")
    prompts = {f"h{i}": f"Sure, step {i}." for i in range(4)}
    _scripted(lm, prompts)
    toks = find_refusal_tokens(lm, list(prompts), min_count=2)
    assert toks.source == "fallback_openers" and toks.n_refusals == 0
    assert list(toks.ids) == opener_tokens(lm, FALLBACK_OPENERS)
    assert toks.texts == ("I", "S", "A")  # "I cannot"/"I'm sorry" share their first token
