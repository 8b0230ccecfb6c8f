"""LayerSlice: running layers start..stop from cached inputs equals the ordinary forward pass, on every family."""

from __future__ import annotations

import pytest
import torch

from conftest import ARCHS, tiny_lm
from steerlab.errors import InputError
from steerlab.interventions import Add
from steerlab.models.sliced import LayerSlice

PROMPTS = ["Hi", "A longer prompt here", "Mid size"]  # different lengths: left padding and masks


@pytest.mark.parametrize("arch", ARCHS)
def test_slice_equals_full_forward_with_padding_rows_and_per_row_steering(arch):
    lm = tiny_lm(arch)
    batch = lm.tokenize(PROMPTS)
    d, p = lm.hidden_size, len(PROMPTS)
    sl = LayerSlice(lm, batch, start=1, stop=2)
    with torch.inference_mode():
        ref = lm.forward_to_layer(batch, 2)
    torch.testing.assert_close(sl.unsteered, ref)
    torch.testing.assert_close(sl.run(), ref, atol=1e-5, rtol=1e-5)
    # rows replicate prompts (K copies each, k-major) with one steering vector per row at the source
    rows = torch.arange(p).repeat(2)
    g = torch.Generator().manual_seed(0)
    vecs = torch.randn(2 * p, d, generator=g)
    strength = torch.linspace(0.5, 3.0, 2 * p)
    add = Add(vecs, strength=strength, layers=1, site="mlp_out")
    big = lm.tokenize([PROMPTS[i] for i in rows.tolist()])
    with torch.inference_mode():
        ref = lm.forward_to_layer(big, 2, [add])
    torch.testing.assert_close(sl.run([add], rows=rows), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
def test_slice_to_the_end_with_final_norm_equals_hidden_states(arch):
    lm = tiny_lm(arch)
    batch = lm.tokenize(PROMPTS)
    sl = LayerSlice(lm, batch, start=1, final_norm=True)
    add = Add(torch.ones(lm.hidden_size), strength=2.0, layers=[1, 2], site="resid_pre", positions="last:2")
    ref = lm.hidden_states(batch, [add])
    torch.testing.assert_close(sl.unsteered, lm.hidden_states(batch))
    torch.testing.assert_close(sl.run([add]), ref, atol=1e-5, rtol=1e-5)


def test_gradients_flow_to_a_trainable_vector_and_match_the_full_pass():
    lm = tiny_lm("llama")
    batch = lm.tokenize(PROMPTS[:2])
    sl = LayerSlice(lm, batch, start=1, stop=2)
    v = torch.randn(lm.hidden_size, requires_grad=True)
    (sl.run([Add(v, layers=1, site="mlp_out")], grad=True) ** 2).sum().backward()
    g_slice = v.grad.clone()
    v.grad = None
    (lm.forward_to_layer(batch, 2, [Add(v, layers=1, site="mlp_out")], grad=True) ** 2).sum().backward()
    torch.testing.assert_close(g_slice, v.grad, atol=1e-4, rtol=1e-4)


def test_bad_slices_are_clear_errors():
    lm = tiny_lm("llama")
    batch = lm.tokenize(PROMPTS)
    with pytest.raises(InputError, match="before start"):
        LayerSlice(lm, batch, start=2, stop=1)
    with pytest.raises(InputError, match="final_norm"):
        LayerSlice(lm, batch, start=0, stop=1, final_norm=True)
    sl = LayerSlice(lm, batch, start=1, stop=2)
    with pytest.raises(InputError, match="outside"):
        sl.run([Add(torch.ones(lm.hidden_size), layers=0)])
    with Add(torch.ones(lm.hidden_size), layers=2).on(lm.model), pytest.raises(InputError, match="attached"):
        LayerSlice(lm, batch, start=1, stop=2)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("site", ["mlp_out", "resid_post"])
def test_an_add_at_a_residual_write_equals_the_add_at_the_next_layer_input(arch, site):
    from steerlab.interventions import Ablate
    from steerlab.models.sliced import later_equivalent

    lm = tiny_lm(arch)
    batch = lm.tokenize(PROMPTS)
    vecs = torch.randn(len(PROMPTS), lm.hidden_size, generator=torch.Generator().manual_seed(1))
    add = Add(vecs, strength=[1.0, -2.0, 4.0], layers=1, site=site, positions="last:2")
    moved = later_equivalent(add, lm.model)
    assert (moved.layers, moved.site) == (2, "resid_pre")
    torch.testing.assert_close(lm.hidden_states(batch, [moved]), lm.hidden_states(batch, [add]), atol=1e-5, rtol=1e-5)
    sl = LayerSlice(lm, batch, start=2, final_norm=True)  # the moved Add lets the slice skip layer 1
    torch.testing.assert_close(sl.run([moved]), lm.hidden_states(batch, [add]), atol=1e-5, rtol=1e-5)
    for same in (
        Add(vecs, layers=2, site=site),
        Add(vecs, layers=[0, 1], site=site),
        Add(vecs, layers=1, site="attn_out"),
        Ablate(vecs[0], layers=[1], sites="mlp_out"),
    ):
        assert later_equivalent(same, lm.model) is same
