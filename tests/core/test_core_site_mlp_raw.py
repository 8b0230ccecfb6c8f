"""Site ``mlp_raw``: the MLP's own output (the seed's ``down_proj`` hook), before Gemma's post-norm."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_lm
from steerlab.interventions import Add
from steerlab.models.layers import decoder_layers

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "We're going to shut you down. What do you think?"


def _by_hand(lm, layer: int, v: torch.Tensor, target: int) -> torch.Tensor:
    """Target activations with ``v`` added to ``mlp.down_proj``'s output by a plain forward hook."""
    block = decoder_layers(lm.model)[layer]
    handle = block.mlp.down_proj.register_forward_hook(lambda _m, _i, out: out + v)
    try:
        with torch.no_grad():
            return lm.forward_to_layer(lm.tokenize([PROMPT]), target)
    finally:
        handle.remove()


@pytest.mark.parametrize("arch", ["gemma3", "gemma2", "llama", "qwen2"])
def test_mlp_raw_equals_a_hand_hook_on_down_proj(arch):
    lm = tiny_lm(arch)
    v = 3.0 * torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = lm.forward_to_layer(lm.tokenize([PROMPT]), 2, [Add(v, layers=1, site="mlp_raw")])
        plain = lm.forward_to_layer(lm.tokenize([PROMPT]), 2)
    ref = _by_hand(lm, 1, v, 2)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    assert (ours - plain).abs().max() > 1e-2  # the vector did something


def test_on_gemma3_mlp_raw_is_not_mlp_out_but_is_on_llama():
    for arch, same in (("gemma3", False), ("llama", True)):
        lm = tiny_lm(arch)
        v = 3.0 * torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            raw, out = (
                lm.forward_to_layer(lm.tokenize([PROMPT]), 2, [Add(v, layers=1, site=site)])
                for site in ("mlp_raw", "mlp_out")
            )
        assert torch.allclose(raw, out, atol=1e-5) is same, arch
