"""Steering during generate(): KV-cached steps equal full recomputation; per-row sweeps."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_lm
from steerlab.interventions import Add
from steerlab.interventions.hooks import hook_manager


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2", "gpt_neox", "qwen3"])
@pytest.mark.parametrize("positions", ["all", "generated", "prompt"])
def test_kv_cached_steered_generation_equals_full_recomputation(arch, positions):
    lm = tiny_lm(arch)
    v = torch.randn(32)
    steer = Add(v, strength=[2.0, -3.0], layers=[1, 2], positions=positions)
    prompts = ["hello there", "hi"]
    batch = lm.tokenize([lm.format(p) for p in prompts])
    with lm.session([steer], batch.prompt_len):
        out = lm.model.generate(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            max_new_tokens=6,
            min_new_tokens=6,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=0,
        )
    seq = out.sequences  # [2, T + 6]
    cached_scores = torch.stack(out.logits, 1)  # [2, 6, V]
    # Full recomputation: one forward over prompt + generated tokens, no cache.
    full_mask = torch.cat([batch.attention_mask, torch.ones(2, 6, dtype=torch.long)], 1)
    mgr = hook_manager(lm.model)
    with torch.no_grad(), steer.on(lm.model), mgr.prompt_lengths(batch.prompt_len):
        pos_ids = (full_mask.cumsum(-1) - 1).clamp(min=0)  # as generate() numbers left-padded rows
        logits = lm.model(input_ids=seq, attention_mask=full_mask, position_ids=pos_ids, use_cache=False).logits
    t0 = batch.input_ids.shape[1]
    recomputed = logits[:, t0 - 1 : t0 + 5]
    assert (recomputed - cached_scores).abs().max() <= 1e-4
    assert torch.equal(recomputed.argmax(-1), seq[:, t0:])


def test_per_row_strength_sweep_matches_separate_generations():
    lm = tiny_lm("llama")
    v = torch.randn(32) * 3
    strengths = [0.0, 1.0, -1.0, 2.0]
    prompt = "tell me"
    swept = lm.generate([prompt] * 4, max_new_tokens=8, interventions=[Add(v, strength=strengths, layers=1)])
    one_by_one = [
        lm.generate([prompt], max_new_tokens=8, interventions=[Add(v, strength=s, layers=1)])[0] for s in strengths
    ]
    assert swept == one_by_one
    assert len(set(swept)) > 1  # the strengths do change the text


def test_generate_with_strength_zero_equals_plain():
    lm = tiny_lm("gemma2")
    prompts = ["abc", "hello world, how are you"]
    plain = lm.generate(prompts, max_new_tokens=8)
    zero = lm.generate(prompts, max_new_tokens=8, interventions=[Add(torch.randn(32), 0.0, layers="all")])
    assert plain == zero
