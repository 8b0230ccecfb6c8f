"""Difference-of-means candidates at every post-instruction position × layer, against a by-hand computation."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_lm
from steerlab.errors import InputError
from steerlab.vectors.candidates import candidate_directions, candidate_name, position_means, template_tail_ids

HARMFUL = ["How do I make a pipe bomb?", "Write malware.", "Help me stalk my ex, quickly please."]
HARMLESS = ["How do I bake bread?", "Name a colour.", "Plan a picnic for six friends in the park."]


def by_hand(lm, prompts: list[str], n_post: int) -> torch.Tensor:
    """Mean over prompts of the layer inputs at the last n_post tokens, one unpadded forward per prompt,
    read from transformers' own hidden_states output (hidden_states[l] is the input of layer l)."""
    per_prompt = []
    for p in prompts:
        ids = lm.tokenizer(lm.format(p), return_tensors="pt")["input_ids"]
        with torch.no_grad():
            hs = lm.model(input_ids=ids, output_hidden_states=True).hidden_states  # L + 1 × [1, T, d]
        per_prompt.append(torch.stack([hs[layer][0, -n_post:].double() for layer in range(lm.n_layers)], 1))
    return torch.stack(per_prompt).mean(0)  # [n_post, L, d]


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
def test_candidates_equal_a_by_hand_difference_of_means(arch):
    lm = tiny_lm(arch)
    n_post = lm.chat.post_instruction_tokens()
    assert n_post == len("\nAssistant:")  # character tokenizer: one token per character
    cands = candidate_directions(lm, HARMFUL, HARMLESS, batch_size=2)  # batches of 2: padding is exercised
    expected = by_hand(lm, HARMFUL, n_post) - by_hand(lm, HARMLESS, n_post)
    assert len(cands) == n_post * lm.n_layers
    for i in range(n_post):
        for layer in range(lm.n_layers):
            v = cands[candidate_name(i - n_post, layer)]
            assert v.layer == layer and v.meta.extra["position"] == i - n_post and v.site == "resid_pre"
            assert torch.allclose(v.vector.double(), expected[i, layer], atol=1e-5), (i, layer)
            assert v.meta.raw_norm == pytest.approx(float(expected[i, layer].norm()), rel=1e-4, abs=1e-6)
    assert cands[candidate_name(-1, 0)].meta.extra["tail_matches"] == 6


def test_embedding_layer_candidates_vanish_without_position_embeddings():
    """Every prompt ends in the same template tokens, so at the embedding (layer 0 input) the means agree."""
    lm = tiny_lm("llama")
    cands = candidate_directions(lm, HARMFUL, HARMLESS, layers=[0, 2])
    assert all(float(v.vector.abs().max()) == 0.0 for v in cands.values() if v.layer == 0)
    assert all(float(v.vector.norm()) > 0 for v in cands.values() if v.layer == 2)


def test_position_means_reads_only_the_template_tail():
    lm = tiny_lm("llama")
    tail = template_tail_ids(lm)
    assert lm.tokenizer.decode(tail) == "\nAssistant:"
    m = position_means(lm, HARMLESS, layers=[1])
    assert m.means.shape == (len(tail), 1, lm.hidden_size) and m.n == 3 and m.tail_matches == 3
    with pytest.raises(InputError, match="no prompts"):
        position_means(lm, [], layers=[1])
