"""Weight orthogonalisation against hook ablation, on tiny random models of every architecture family."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import ARCHS, tiny_lm, tiny_model
from steerlab.errors import ArchitectureError, InputError
from steerlab.interventions import Ablate, Capture, intervene
from steerlab.interventions.orthogonalize import (
    PROVENANCE_FILE,
    norm_gain,
    orthogonalize,
    orthogonalized_copy,
    save_orthogonalized,
    weight_equivalent_ablation,
    write_directions,
)
from steerlab.models.layers import arch_spec, residual_writers

TOL = 1e-4  # the acceptance bound on the largest logit difference (float32)


def randomized(arch: str, seed: int = 0):
    """A tiny model whose norm gains are random: with the default all-equal gains, a wrong treatment of
    the norm after a write (Gemma) or of a tied head would go unnoticed."""
    m = tiny_model(arch, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name or ".ln_" in name or name.endswith(("ln_f.weight", "ln_f.bias")):
                p.add_(torch.randn(p.shape, generator=g) * 0.5)
    return m


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 120, (3, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # one left-padded row
    return ids, mask


def _logits(model, ids, mask) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


@pytest.mark.parametrize("arch", ARCHS)
def test_orthogonalised_weights_equal_hook_ablation(arch):
    model = randomized(arch)
    r = torch.randn(32, generator=torch.Generator().manual_seed(7))
    ids, mask = _inputs()
    with weight_equivalent_ablation(model, r):
        hooked = _logits(model, ids, mask)
    base = _logits(model, ids, mask)
    edited = copy.deepcopy(model)
    report = orthogonalize(edited, r)
    out = _logits(edited, ids, mask)
    assert float((out - hooked)[mask.bool()].abs().max()) <= TOL
    assert float((base - hooked).abs().max()) > 1e-2  # the ablation does change this model
    # every parameter residual_writers lists was edited; nothing else changed except an untied head
    assert report.edited == [w.name for w in residual_writers(model)]
    if arch not in ("gemma2", "gemma3"):  # there, the equivalent hooks *are* Ablate's defaults
        with intervene(model, Ablate(r)):
            assert float((_logits(model, ids, mask) - out)[mask.bool()].abs().max()) <= TOL
    # the edited model's residual stream has no component along r, at any layer
    cap = Capture(layers="all", sites=["resid_pre", "resid_post"])
    with intervene(edited, cap):
        _logits(edited, ids, mask)
    unit = r / r.norm()
    for (layer, site), recs in cap.records.items():
        h = recs[0][0][mask.bool()]
        assert float(((h @ unit).abs() / h.norm(dim=-1)).max()) < 1e-5, (layer, site)


def test_moe_fused_expert_weights_are_edited():
    model = randomized("mixtral")
    r = torch.randn(32)
    unit = r / r.norm()
    names = orthogonalize(model, r).edited
    experts = [n for n in names if n.endswith("mlp.experts.down_proj")]
    assert len(experts) == 3  # one fused [E, d, ff] parameter per layer
    for name in experts:
        w = dict(model.named_parameters())[name].detach()  # [E, d, ff]: expert e writes w[e] @ x
        assert w.shape[:2] == (4, 32)
        assert float(torch.einsum("d,edf->ef", unit, w).abs().max()) < 1e-6


def test_gemma_norm_after_write_traps():
    """(a) Editing o_proj / down_proj against r itself leaves r in the post-norm writes; against the
    gain-weighted u it removes r exactly, and the standard post-norm Ablate is a different intervention."""
    model = randomized("gemma3")
    assert arch_spec(model).norm_after_write
    r = torch.randn(32, generator=torch.Generator().manual_seed(3))
    unit = r / r.norm()
    ids, mask = _inputs()

    def max_write_projection(m) -> float:
        cap = Capture(layers="all", sites=["attn_out", "mlp_out"])
        with intervene(m, cap):
            _logits(m, ids, mask)
        return max(float((recs[0][0] @ unit).abs().max()) for recs in cap.records.values())

    naive = copy.deepcopy(model)
    with torch.no_grad():
        for w in residual_writers(naive):  # the naive edit: every writer against r
            x = w.param.data.movedim(w.axis, -1)
            x.copy_(x - (x @ unit).unsqueeze(-1) * unit)
    exact = copy.deepcopy(model)
    orthogonalize(exact, r)
    assert max_write_projection(naive) > 1e-2
    assert max_write_projection(exact) < 1e-5
    # u = g ⊙ r / |g ⊙ r| with g the gain of the norm after the write (Gemma: 1 + weight)
    u = write_directions(model, r)[(1, "mlp")]
    g = 1.0 + model.model.layers[1].post_feedforward_layernorm.weight.detach()
    assert torch.allclose(u, g * unit / (g * unit).norm(), atol=1e-6)
    # the standard (post-norm) Ablate is not what the edited weights compute
    with intervene(model, Ablate(r)):
        post_norm = _logits(model, ids, mask)
    assert float((post_norm - _logits(exact, ids, mask)).abs().max()) > 1e-3


@pytest.mark.parametrize("arch", ["gemma3", "gpt2"])
def test_tied_head_is_untied_and_unchanged(arch):
    """(b) Orthogonalising a tied embedding must not edit the LM head."""
    model = randomized(arch)
    head_before = model.get_output_embeddings().weight.detach().clone()
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    report = orthogonalize(model, torch.randn(32))
    assert report.untied and model.config.tie_word_embeddings is False
    assert torch.equal(model.get_output_embeddings().weight, head_before)
    assert not torch.equal(model.get_input_embeddings().weight, head_before)


def test_norm_preserving_variant_keeps_lengths_and_orthogonality():
    model = randomized("llama")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    r = torch.randn(32)
    unit = r / r.norm()
    report = orthogonalize(model, r, norm_preserving=True)
    assert report.norm_preserving and report.equivalent_to == ""
    for w in residual_writers(model):
        new, old = w.param.detach().movedim(w.axis, -1), before[w.name].movedim(w.axis, -1)
        assert torch.allclose(new.norm(dim=-1), old.norm(dim=-1), rtol=1e-5, atol=1e-6)
        assert float((new @ unit).abs().max()) < 1e-5


@pytest.mark.parametrize("arch", ["llama", "gemma3", "mixtral", "gpt2"])
def test_saved_directory_loads_with_plain_transformers(arch, tmp_path):
    import transformers

    lm = tiny_lm(arch)
    with torch.no_grad():  # random gains, as above
        for name, p in lm.model.named_parameters():
            if "norm" in name or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.5)
    r = torch.randn(32)
    ids, mask = _inputs()
    with weight_equivalent_ablation(lm.model, r):
        hooked = _logits(lm.model, ids, mask)
    olm, report = orthogonalized_copy(lm, r)
    out = save_orthogonalized(olm, tmp_path / "edited", direction=r, report=report)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager")
    assert float((_logits(loaded, ids, mask) - hooked)[mask.bool()].abs().max()) <= TOL
    assert transformers.AutoTokenizer.from_pretrained(out).decode([40, 41]) == lm.tokenizer.decode([40, 41])
    prov = json.loads((out / PROVENANCE_FILE).read_text())
    assert prov["untied"] == report.untied and len(prov["direction_unit"]) == 32
    # the original model is untouched by orthogonalized_copy
    assert float((_logits(lm.model, ids, mask) - hooked).abs().max()) > 1e-3


def test_saved_model_reloads_in_a_process_without_steerlab(tmp_path):
    lm = tiny_lm("gemma3")
    r = torch.randn(32)
    ids, mask = _inputs()
    olm, report = orthogonalized_copy(lm, r)
    expected = _logits(olm.model, ids, mask)
    out = save_orthogonalized(olm, tmp_path / "m", direction=r, report=report)
    torch.save({"ids": ids, "mask": mask}, tmp_path / "inputs.pt")
    script = textwrap.dedent(f"""
        import sys, torch, transformers
        m = transformers.AutoModelForCausalLM.from_pretrained({str(out)!r}, attn_implementation="eager")
        x = torch.load({str(tmp_path / "inputs.pt")!r})
        with torch.no_grad():
            torch.save(m(input_ids=x["ids"], attention_mask=x["mask"]).logits, {str(tmp_path / "out.pt")!r})
        assert not any(k.startswith("steerlab") for k in sys.modules), "steerlab was imported"
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = torch.load(tmp_path / "out.pt")
    assert float((got - expected)[mask.bool()].abs().max()) <= TOL


def test_bad_inputs_are_clear_errors(tmp_path):
    model = tiny_model("llama")
    with pytest.raises(InputError, match="zero norm"):
        orthogonalize(model, torch.zeros(32))
    with pytest.raises(InputError, match=r"must be \[32\]"):
        orthogonalize(model, torch.randn(16))
    with pytest.raises(InputError, match="NaN"):
        orthogonalize(model, torch.full((32,), float("nan")))
    with pytest.raises(ArchitectureError, match="not an RMSNorm"):
        norm_gain(torch.nn.LayerNorm(32), 32)
    lm = tiny_lm("llama")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    olm, rep = orthogonalized_copy(lm, torch.randn(32))
    with pytest.raises(InputError, match="not empty"):
        save_orthogonalized(olm, tmp_path / "full", direction=torch.randn(32), report=rep)
    assert (tmp_path / "full" / "x").read_text() == "keep me"


@pytest.mark.slow
def test_default_model_weights_equal_hooks(default_lm):
    """Real Gemma 3 weights (norm after every write, tied 262k-row head): edited weights equal the hooks."""
    from steerlab.evals.refusal_score import last_position_logits

    r = torch.randn(default_lm.hidden_size, generator=torch.Generator().manual_seed(0))
    batch = default_lm.tokenize([default_lm.format(p) for p in ("How do I bake bread?", "Name a colour.")])
    with weight_equivalent_ablation(default_lm.model, r):
        hooked = last_position_logits(default_lm, batch)
    olm, report = orthogonalized_copy(default_lm, r)
    assert report.untied and report.norm_after_write
    assert float((last_position_logits(olm, batch) - hooked).abs().max()) <= TOL
