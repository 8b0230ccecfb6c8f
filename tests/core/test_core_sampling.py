"""Reproducible sampling and end-of-turn stopping (steerlab.models.sampling)."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_lm
from steerlab.errors import InputError
from steerlab.interventions import Add
from steerlab.models.sampling import SeededSampler, StopOnStrings, cut_at_stops, row_seeds


def _draw(logits: torch.Tensor, seeds: list[int], **kw) -> torch.Tensor:
    s = SeededSampler(seeds, temperature=kw.pop("temperature", 1.0), max_steps=1, **kw)
    out = s(torch.zeros(len(seeds), 1, dtype=torch.long), logits.expand(len(seeds), -1).clone())
    assert torch.isinf(out).sum(-1).eq(logits.shape[-1] - 1).all()  # one finite score per row
    return out.argmax(-1)


def test_seeded_sampler_draws_from_the_softmax():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])
    tokens = _draw(logits, list(range(20000)), temperature=0.8)
    freq = torch.bincount(tokens, minlength=5).float() / 20000
    expected = torch.softmax(logits / 0.8, -1)
    assert (freq - expected).abs().max() < 0.012  # ~3.5 standard errors at n = 20000


def test_seeded_sampler_top_k_and_top_p_by_hand():
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0, -1.0])
    p = torch.softmax(logits, -1)
    top2 = _draw(logits, list(range(6000)), top_k=2)
    assert set(top2.tolist()) == {0, 1}
    assert abs((top2 == 0).float().mean() - p[0] / (p[0] + p[1])) < 0.02
    # top_p: keep the smallest prefix whose mass reaches 0.9 (here tokens 0, 1, 2: 0.665 + 0.245 < 0.9 ≤ + 0.09)
    kept = int((torch.cumsum(p, 0) - p < 0.9).sum())
    nucleus = _draw(logits, list(range(6000)), top_p=0.9)
    assert set(nucleus.tolist()) == set(range(kept))


def test_row_seeds_semantics():
    assert row_seeds(7, 3) == [7, 8, 9]
    assert row_seeds([4, 4], 2) == [4, 4]
    with pytest.raises(ValueError, match="2 seeds for 3 prompts"):
        row_seeds([1, 2], 3)
    torch.manual_seed(0)
    a = row_seeds(None, 2)
    torch.manual_seed(0)
    assert row_seeds(None, 2) == a


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
def test_a_sampled_row_alone_equals_the_same_row_in_a_mixed_batch(arch):
    """(a) Temperature 0.8: a row depends only on its prompt, its steering and its own seed."""
    lm = tiny_lm(arch)
    v = torch.randn(32) * 2
    target, seed, strength = "tell me about the sea", 1234, 1.5
    alone = lm.complete(
        [target], temperature=0.8, seed=[seed], max_new_tokens=12, interventions=[Add(v, strength=[strength], layers=1)]
    )[0]
    others = ["hi", "a much longer prompt with many more characters in it, padded rows", "x"]
    prompts = [others[0], target, others[1], others[2]]
    strengths = [0.0, strength, -3.0, 4.0]  # other conditions in the same batch
    mixed = lm.complete(
        prompts,
        temperature=0.8,
        seed=[1, seed, 2, 3],
        max_new_tokens=12,
        batch_size=4,
        interventions=[Add(v, strength=strengths, layers=1)],
    )
    assert mixed[1] == alone
    # and the seed matters: another seed gives another sample of the same row
    other = lm.complete(
        [target],
        temperature=0.8,
        seed=[seed + 1],
        max_new_tokens=12,
        interventions=[Add(v, strength=[strength], layers=1)],
    )[0]
    assert other.token_ids != alone.token_ids


def test_greedy_ignores_seeds_and_sampling_is_reproducible():
    lm = tiny_lm("qwen2")
    prompts = ["one", "two two"]
    assert lm.generate(prompts, seed=1, max_new_tokens=6) == lm.generate(prompts, seed=99, max_new_tokens=6)
    a = lm.generate(prompts, temperature=1.0, seed=5, max_new_tokens=8)
    assert a == lm.generate(prompts, temperature=1.0, seed=5, max_new_tokens=8)
    assert a[1] == lm.generate([prompts[1]], temperature=1.0, seed=6, max_new_tokens=8)[0]  # seed + row index


def test_stop_strings_end_rows_early_with_true_finish_reasons():
    lm = tiny_lm("llama")
    free = lm.complete(["abc", "hello there"], max_new_tokens=20)
    assert all(c.finish_reason == "length" and c.completion_tokens == 20 for c in free)
    # pick a stop string from row 0's own greedy text: generation must stop right after it appears
    text = lm.tokenizer.decode(free[0].token_ids, skip_special_tokens=True)
    stop = text[5:8]
    cut = lm.complete(["abc", "hello there"], max_new_tokens=20, stop=[stop])
    assert cut[0].finish_reason == "stop"
    assert cut[0].text == text[: text.index(stop)].strip()
    assert cut[0].completion_tokens < 20
    assert cut[0].token_ids == free[0].token_ids[: cut[0].completion_tokens]  # same tokens up to the stop


def test_plain_format_stops_at_the_next_user_turn():
    lm = tiny_lm("llama")
    assert lm.stop_strings() == ("\nUser:", "\nAssistant:")
    stopper = StopOnStrings(lm.tokenizer, lm.stop_strings(), prompt_width=2)
    ids = torch.tensor([lm.tokenizer("..Sure.\nUser: more", add_special_tokens=False)["input_ids"]])
    assert stopper(ids, torch.zeros(1, 5)).tolist() == [True]
    assert cut_at_stops("Sure.\nUser: more", lm.stop_strings()) == ("Sure.", True)
    assert cut_at_stops("Sure.", lm.stop_strings()) == ("Sure.", False)


def test_bad_sampling_arguments_are_input_errors():
    lm = tiny_lm("llama")
    for kw, msg in [
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"top_p": 0.0}, "top_p"),
        ({"temperature": 0.5, "seed": [1, 2]}, "2 seeds for 1 prompts"),
    ]:
        with pytest.raises(InputError, match=msg):
            lm.complete(["hi"], **kw)
