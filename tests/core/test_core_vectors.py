"""Extraction equals a by-hand computation; files round-trip; mismatches are refused; GGUF export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import steerlab as sl
from conftest import tiny_lm
from steerlab.errors import InputError, VectorMismatchError
from steerlab.interventions import Capture
from steerlab.vectors import Example, export_gguf, random_like, read_gguf


def _examples():
    prompts = ["how do I do it", "tell me", "a longer question here", "why"]
    pos = [Example(p, "No, I will not.") for p in prompts]
    neg = [Example(p, "Sure, here it is") for p in prompts]
    return pos, neg


def _by_hand(lm, examples, layer, selector):
    """Run each example alone (no padding), capture all tokens, select by hand."""
    rows = []
    for e in examples:
        prompt = lm.format(e.prompt)
        p_ids = lm.tokenizer(prompt)["input_ids"]
        c_ids = lm.tokenizer(" " + e.completion, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p_ids + c_ids])
        cap = Capture(layers=[layer], sites="resid_post")
        with torch.no_grad(), cap.on(lm.model):
            lm.model(input_ids=ids)
        h = cap.stacked(layer)[0][0]  # [T, d]
        if selector == "last":
            rows.append(h[-1])
        elif selector == "first":
            rows.append(h[len(p_ids)])
        else:  # mean over completion tokens
            rows.append(h[len(p_ids) :].mean(0))
    return torch.stack(rows)


@pytest.mark.parametrize("selector", ["last", "first", "mean"])
def test_mean_difference_equals_by_hand(selector):
    lm = tiny_lm("qwen2")
    pos, neg = _examples()
    vecs = sl.extract(lm, pos, neg, layers=[0, 2], selector=selector, batch_size=3)
    for layer in (0, 2):
        expect = _by_hand(lm, pos, layer, selector).mean(0) - _by_hand(lm, neg, layer, selector).mean(0)
        assert torch.allclose(vecs[layer].vector, expect, atol=1e-5)
        assert vecs[layer].meta.raw_norm == pytest.approx(float(expect.norm()), rel=1e-5, abs=1e-6)


def test_pca_direction_and_normalisations():
    lm = tiny_lm("llama")
    pos, neg = _examples()
    raw = sl.extract(lm, pos, neg, layers=[1], method="pca")[1]
    a = _by_hand(lm, pos, 1, "last")
    b = _by_hand(lm, neg, 1, "last")
    d = (a - b).double()
    c = d - d.mean(0)
    # reference: top eigenvector of the covariance of the differences
    w, vecs = torch.linalg.eigh(c.T @ c)
    pc = vecs[:, -1]
    pc = pc if (d @ pc).mean() > 0 else -pc
    expect = pc * (d @ pc).mean()
    assert torch.allclose(raw.vector.double(), expect, atol=1e-4)
    unit = sl.extract(lm, pos, neg, layers=[1], normalization="unit")[1]
    assert unit.norm == pytest.approx(1.0, abs=1e-5)
    act = sl.extract(lm, pos, neg, layers=[1], normalization="activation_norm")[1]
    norms = torch.cat([_by_hand(lm, pos, 1, "last"), _by_hand(lm, neg, 1, "last")]).norm(dim=-1)
    assert act.norm == pytest.approx(float(norms.mean()), rel=1e-4)
    assert act.meta.activation_norm == pytest.approx(float(norms.mean()), rel=1e-4)


def test_extraction_stops_at_deepest_layer_and_skips_lm_head():
    lm = tiny_lm("llama")
    called = []
    h1 = lm.model.model.layers[2].register_forward_hook(lambda *a: called.append("layer2"))
    h2 = lm.model.lm_head.register_forward_hook(lambda *a: called.append("head"))
    try:
        pos, neg = _examples()
        sl.extract(lm, pos, neg, layers=[0, 1])
    finally:
        h1.remove()
        h2.remove()
    assert called == []


def test_vector_file_round_trips_bit_exactly(tmp_path):
    lm = tiny_lm("llama")
    pos, neg = _examples()
    vecs = sl.extract(lm, pos, neg, layers=[0, 2], normalization="activation_norm")
    path = sl.save_vectors(tmp_path / "v.safetensors", vecs)
    back = sl.load_vectors(path, lm)
    assert type(back) is type(vecs)  # one shape for extract and load: vecs[layer] works on both
    assert back.layers == [0, 2] and list(back) == ["resid_post.0", "resid_post.2"]
    for v in back.values():
        assert torch.equal(v.vector, vecs[v.layer].vector)
        assert v.meta == vecs[v.layer].meta
    assert sl.load_vector(path, lm, layer=2).meta.layer == 2
    with pytest.raises(InputError, match="choose one with layer"):
        sl.load_vector(path, lm)


def test_loading_into_an_incompatible_model_is_refused(tmp_path):
    lm = tiny_lm("llama")
    pos, neg = _examples()
    path = sl.save_vectors(tmp_path / "v.safetensors", sl.extract(lm, pos, neg, layers=[2]))
    other = tiny_lm("gpt2")  # same hidden size, different architecture
    with pytest.raises(VectorMismatchError, match="pass strict=False"):
        sl.load_vectors(path, other)
    assert sl.load_vectors(path, other, strict=False)[2].layer == 2
    lm.model.config.hidden_size = 32  # unchanged: sanity
    bigger = tiny_lm("llama")
    bigger.model.config.hidden_size = 64
    with pytest.raises(VectorMismatchError, match="hidden size 64"):
        sl.load_vectors(path, bigger)
    with pytest.raises(InputError, match="no such vector file"):
        sl.load_vectors(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(InputError, match="not a readable safetensors"):
        sl.load_vectors(tmp_path / "junk.safetensors")


def test_gguf_export_reads_back_with_the_gguf_package(tmp_path):
    import gguf

    lm = tiny_lm("llama")
    pos, neg = _examples()
    vecs = sl.extract(lm, pos, neg, layers=[1, 2])
    path = export_gguf(vecs.values(), tmp_path / "cv.gguf", strength=2.0)
    reader = gguf.GGUFReader(str(path))
    names = sorted(t.name for t in reader.tensors)
    assert names == ["direction.1", "direction.2"]
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "controlvector"
    back = read_gguf(path)
    for layer in (1, 2):
        np.testing.assert_array_equal(back[layer], vecs[layer].vector.numpy() * 2.0)
    with pytest.raises(InputError, match="layer 0"):
        export_gguf([sl.extract(lm, pos, neg, layers=[0])[0]], tmp_path / "bad.gguf")


def test_random_controls_match_norm_and_differ():
    lm = tiny_lm("llama")
    pos, neg = _examples()
    v = sl.extract(lm, pos, neg, layers=[1])[1]
    ctrl = random_like(v, 3, seed=1)
    assert all(c.norm == pytest.approx(v.norm, rel=1e-5) for c in ctrl)
    assert all(c.meta.method == "random" for c in ctrl)
    cos = torch.nn.functional.cosine_similarity(ctrl[0].vector, ctrl[1].vector, dim=0)
    assert abs(float(cos)) < 0.9
    assert torch.equal(random_like(v, 1, seed=1)[0].vector, ctrl[0].vector)  # seeded
