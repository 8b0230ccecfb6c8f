"""Add / Ablate / Capture on tiny random models of every supported architecture."""

from __future__ import annotations

import pytest
import torch

from conftest import ARCHS, tiny_model
from steerlab.interventions import Ablate, Add, Capture, Span, intervene
from steerlab.models.layers import num_layers


def _left_padded(seed: int = 0, lengths=(7, 4, 6)):
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, n in enumerate(lengths):
        ids[r, width - n :] = torch.randint(4, 128, (n,), generator=g)
        mask[r, width - n :] = 1
    return ids, mask


def _pos(mask):
    """Position ids that number each left-padded row from 0 (what generate() does)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_strength_zero_is_bit_identical(arch):
    m = tiny_model(arch)
    ids, mask = _left_padded()
    with torch.no_grad():
        ref = m(input_ids=ids, attention_mask=mask, position_ids=_pos(mask)).logits
        with Add(torch.randn(32), strength=0.0, layers="all", site="resid_post").on(m):
            out = m(input_ids=ids, attention_mask=mask, position_ids=_pos(mask)).logits
        with Add(torch.randn(32), strength=[0.0, 0.0, 0.0], layers=[0, 2], site="mlp_out").on(m):
            out2 = m(input_ids=ids, attention_mask=mask, position_ids=_pos(mask)).logits
    assert torch.equal(ref, out) and torch.equal(ref, out2)
    # and the hooks are gone afterwards: a nonzero vector no longer changes anything
    with torch.no_grad():
        assert torch.equal(ref, m(input_ids=ids, attention_mask=mask, position_ids=_pos(mask)).logits)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("site", ["resid_pre", "resid_post", "attn_out", "mlp_out"])
def test_per_row_batch_equals_rows_one_by_one(arch, site):
    m = tiny_model(arch)
    ids, mask = _left_padded(lengths=(7, 3, 5))
    v = torch.randn(32)
    strengths = [0.5, -2.0, 4.0]
    with torch.no_grad(), Add(v, strength=strengths, layers=1, site=site).on(m):
        batched = m(input_ids=ids, attention_mask=mask, position_ids=_pos(mask)).logits
    for r, s in enumerate(strengths):
        keep = mask[r].bool()
        with torch.no_grad(), Add(v, strength=s, layers=1, site=site).on(m):
            single = m(input_ids=ids[r : r + 1, keep]).logits[0]
        assert (batched[r, keep] - single).abs().max() <= 1e-5, (arch, site, r)
    # per-row *vectors* too
    vs = torch.randn(3, 32)
    with torch.no_grad(), Add(vs, strength=1.5, layers=[0, 2], site=site).on(m):
        batched = m(input_ids=ids, attention_mask=mask, position_ids=_pos(mask)).logits
    for r in range(3):
        keep = mask[r].bool()
        with torch.no_grad(), Add(vs[r], strength=1.5, layers=[0, 2], site=site).on(m):
            single = m(input_ids=ids[r : r + 1, keep]).logits[0]
        assert (batched[r, keep] - single).abs().max() <= 1e-5


@pytest.mark.parametrize("arch", ARCHS)
def test_ablation_leaves_no_projection_at_any_ablated_site(arch):
    m = tiny_model(arch)
    ids, mask = _left_padded()
    r = torch.randn(32)
    unit = r / r.norm()
    sites = ["resid_pre", "attn_out", "mlp_out", "resid_post"]
    cap = Capture(layers="all", sites=sites)
    with torch.no_grad(), intervene(m, Ablate(r), cap):
        m(input_ids=ids, attention_mask=mask, position_ids=_pos(mask))
    for layer in range(num_layers(m)):
        for site in sites:  # resid_post is not hooked by Ablate but is a sum of ablated terms
            h, sel = cap.stacked(layer, site)
            proj = (h @ unit)[sel]
            assert proj.abs().max() <= 1e-5, (arch, layer, site, proj.abs().max())
    # without ablation the projection is far from zero (the check above can fail)
    cap2 = Capture(layers=[1], sites="resid_post")
    with torch.no_grad(), cap2.on(m):
        m(input_ids=ids, attention_mask=mask, position_ids=_pos(mask))
    h, sel = cap2.stacked(1)
    assert (h @ unit)[sel].abs().max() > 1e-2


def test_add_changes_only_selected_positions():
    m = tiny_model("llama")
    ids, mask = _left_padded(lengths=(6, 4))
    v = torch.randn(32)
    base = Capture(layers=[0], sites="resid_post")
    with torch.no_grad(), base.on(m):
        m(input_ids=ids, attention_mask=mask, position_ids=_pos(mask))
    for positions, expect in [
        ("last", {(0, 5), (1, 3)}),
        ("last:2", {(0, 4), (0, 5), (1, 2), (1, 3)}),
        (Span(0, 1), {(0, 0), (1, 0)}),
        ([1, -1], {(0, 1), (0, 5), (1, 1), (1, 3)}),
    ]:
        cap = Capture(layers=[0], sites="resid_post")
        with torch.no_grad(), intervene(m, Add(v, 3.0, layers=0, positions=positions), cap):
            m(input_ids=ids, attention_mask=mask, position_ids=_pos(mask))
        diff = (cap.stacked(0)[0] - base.stacked(0)[0]).norm(dim=-1)  # [B, T]
        changed = set()
        for b in range(2):
            offset = int((mask[b] == 0).sum())
            for t in range(ids.shape[1]):
                if diff[b, t] > 1e-4:
                    changed.add((b, t - offset))  # index among real tokens
        assert changed == expect, positions


def test_hooks_removed_after_exception():
    m = tiny_model("llama")
    ids, _ = _left_padded(lengths=(5,))
    with torch.no_grad():
        ref = m(input_ids=ids).logits
        with pytest.raises(RuntimeError, match="boom"), Add(torch.randn(32), 5.0, layers=1).on(m):
            raise RuntimeError("boom")
        assert torch.equal(ref, m(input_ids=ids).logits)
    assert all(len(mod._forward_hooks) == 0 and len(mod._forward_pre_hooks) == 0 for mod in m.modules())


def test_mismatched_vector_size_and_bad_layer_are_clear_errors():
    from steerlab.errors import ArchitectureError, InputError

    m = tiny_model("llama")
    with pytest.raises(InputError, match="hidden size is 32"), Add(torch.randn(16), 1.0, layers=0).on(m):
        pass
    with pytest.raises(ArchitectureError, match="out of range"), Add(torch.randn(32), 1.0, layers=7).on(m):
        pass
