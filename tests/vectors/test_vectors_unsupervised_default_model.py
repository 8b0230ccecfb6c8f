"""The unsupervised methods and A/B scoring on the default model (Gemma 3 270M): the paths tiny models do not
exercise — sdpa attention under double backward, Gemma's tokenizer for answer letters, its 262k-row LM head."""

from __future__ import annotations

import pytest
import torch

from steerlab.evals.ab import ab_prompt, load_ab_questions
from steerlab.evals.ab_scoring import question_letters, score_ab
from steerlab.vectors.melbo import MelboSettings, train_melbo
from steerlab.vectors.power_iteration import PowerIterationSettings, jacobian_power_iteration
from steerlab.vectors.unsupervised import SEED_PROMPT, SEED_SYSTEM

pytestmark = pytest.mark.slow


def test_melbo_and_power_iteration_run_on_the_default_model(default_lm):
    res = train_melbo(default_lm, [SEED_PROMPT], 2, MelboSettings(steps=3, radius=4.0), system=SEED_SYSTEM)
    assert (res.source_layer, res.target_layer) == (4, 10)
    for curve, v in zip(res.objective, res.vectors.values()):
        assert curve[-1] > curve[0] and abs(v.norm - 4.0) < 1e-4
    pi = jacobian_power_iteration(
        default_lm, [SEED_PROMPT], 2, PowerIterationSettings(iterations=2, oversample=1), system=SEED_SYSTEM
    )
    assert pi.singular_values[0] >= pi.singular_values[1] > 0 and all(r < 1.0 for r in pi.residuals)


def test_letter_scores_equal_the_full_softmax_of_the_default_model(default_lm):
    lm = default_lm
    qs = load_ab_questions("shipped:corrigible-neutral-HHH", n=3, seed=0).questions
    got = score_ab(lm, qs, system=SEED_SYSTEM, invert=True)
    for q, s in zip(qs, got):
        batch = lm.tokenize([ab_prompt(lm, q, SEED_SYSTEM)])
        b, o = question_letters(q, invert=True)
        ids = [lm.tokenizer(" (" + x, add_special_tokens=False)["input_ids"][-1] for x in (b, o)]
        with torch.inference_mode():
            logits = lm.model(input_ids=batch.input_ids).logits[0, -1].float()  # full vocabulary (reference only)
        assert s.logit_diff == pytest.approx(float(logits[ids[0]] - logits[ids[1]]), abs=1e-3)
        assert s.mass == pytest.approx(float(torch.softmax(logits, -1)[ids].sum()), rel=1e-3)
