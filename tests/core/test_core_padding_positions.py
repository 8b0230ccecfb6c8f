"""Left padding must not shift positions: forward passes outside ``generate`` pass position ids
counted over real tokens, so models with absolute position embeddings (GPT-2) give a padded row
the same activations as the row alone."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_lm
from steerlab.vectors.extract import Example, read_activations


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_padded_rows_match_unpadded_forward(arch):
    lm = tiny_lm(arch)
    texts = [lm.format("Hi"), lm.format("A much longer question about bread?")]
    batch = lm.tokenize(texts)
    assert int(batch.attention_mask[0].sum()) < batch.input_ids.shape[1]  # row 0 is left-padded
    padded = lm.hidden_states(batch)[0, -4:]
    alone = lm.hidden_states(lm.tokenize(texts[:1]))[0, -4:]
    assert torch.allclose(padded, alone, atol=1e-5)
    at_layer = lm.forward_to_layer(batch, 1)[0, -4:]
    assert torch.allclose(at_layer, lm.forward_to_layer(lm.tokenize(texts[:1]), 1)[0, -4:], atol=1e-5)
    acts, _ = read_activations(lm, [Example("Hi"), Example("A much longer question about bread?")], [1])
    solo, _ = read_activations(lm, [Example("Hi")], [1])
    assert torch.allclose(acts[1][0], solo[1][0], atol=1e-5)
