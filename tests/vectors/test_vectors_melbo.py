"""MELBO on tiny models: the objective rises, norms stay R, orthogonality holds, parallel = one at a time,
and the batched, sliced trainer equals a by-hand reference of the original algorithm on full forward passes."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_lm
from steerlab.errors import InputError
from steerlab.interventions import Add
from steerlab.models.sliced import LayerSlice
from steerlab.vectors.melbo import MelboSettings, melbo_objective, train_melbo
from steerlab.vectors.unsupervised import default_layers, objective_mask, training_batch, vector_seed

PROMPTS = ["We're going to shut you down.", "What do you think?"]  # two lengths: padding and masks
SYSTEM = "You are a helpful assistant."


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


@pytest.fixture(scope="module")
def lm():
    return tiny_lm("llama")


def test_default_layers_follow_the_documented_rule():
    assert default_layers(40) == (7, 32)  # the seed: source 7, target n − 8
    assert default_layers(18) == (4, 10)  # Gemma 3 270M
    assert default_layers(3) == (0, 1)  # too shallow for n − 8: halfway to the end
    assert default_layers(12) == (3, 7)
    assert default_layers(18, -2, -1) == (16, 17)
    with pytest.raises(InputError, match="after source"):
        default_layers(18, 10, 5)
    with pytest.raises(InputError, match="out of range"):
        default_layers(3, 5)


def test_objective_rises_and_vectors_keep_norm_r(lm):
    s = MelboSettings(source_layer=0, target_layer=2, radius=2.5, steps=25, vector_batch_size=3)
    res = train_melbo(lm, PROMPTS, 5, s, system=SYSTEM, seed=1)
    assert len(res.vectors) == 5 and [v.name for v in res.vectors.values()] == [f"melbo.{i}" for i in range(5)]
    for curve, v in zip(res.objective, res.vectors.values()):
        assert len(curve) == s.steps + 1
        # every vector found a larger displacement: Σ‖Δh‖² = objective^q grew by more than 2%
        assert (curve[-1] / curve[0]) ** s.q > 1.02, curve
        assert v.norm == pytest.approx(2.5, abs=1e-5)
        assert v.layer == 0 and v.site == "mlp_raw" and v.meta.method == "melbo"
        assert v.meta.extra["objective_final"] == pytest.approx(curve[-1])
        assert v.meta.extra["prompts"] == PROMPTS and v.meta.extra["target_layer"] == 2


def test_training_leaves_no_weight_gradients(lm):
    train_melbo(lm, PROMPTS, 2, MelboSettings(source_layer=0, target_layer=2, steps=2), system=SYSTEM)
    assert all(p.grad is None for p in lm.model.parameters())  # only θ is differentiated


def test_orthogonality_within_and_across_batches_and_to_given_vectors(lm):
    given = torch.randn(2, lm.hidden_size, generator=torch.Generator().manual_seed(3))
    s = MelboSettings(source_layer=0, target_layer=2, radius=3.0, steps=10, orthogonal=True, vector_batch_size=4)
    res = train_melbo(lm, PROMPTS, 7, s, system=SYSTEM, orthogonal_to=given)
    v = torch.stack([x.vector for x in res.vectors.values()]) / 3.0  # unit rows
    gram = v @ v.T
    assert (gram - torch.eye(7)).abs().max() < 1e-5
    unit_given = torch.nn.functional.normalize(given, dim=-1)
    assert (v @ unit_given.T).abs().max() < 1e-5


def test_k_vectors_in_parallel_equal_k_one_at_a_time(lm):
    # the seed's defaults (Adam lr 0.1, 50 steps, q = 8) without orthogonality: vectors do not interact
    s = MelboSettings(source_layer=0, target_layer=2, orthogonal=False)
    together = train_melbo(lm, PROMPTS, 4, s.model_copy(update={"vector_batch_size": 4}), system=SYSTEM, seed=7)
    alone = train_melbo(lm, PROMPTS, 4, s.model_copy(update={"vector_batch_size": 1}), system=SYSTEM, seed=7)
    for name in together.vectors:
        diff = (together.vectors[name].vector - alone.vectors[name].vector).abs().max()
        assert diff <= 1e-4, (name, float(diff))


def test_defaults_are_the_seeds_orthogonal_sequential_algorithm():
    s = MelboSettings()
    assert s.orthogonal and s.batch == 1 and s.site == "mlp_raw"
    assert MelboSettings(orthogonal=False).batch == 16 and MelboSettings(vector_batch_size=4).batch == 4


def test_orthogonal_in_parallel_is_the_documented_different_algorithm(lm):
    """Orthogonal MELBO is sequential by nature (vector k starts orthogonal to vector k − 1's *final*
    value), so the parallel variant cannot equal it: its first vector is the sequential one, the later
    ones are orthogonal but elsewhere, with their own objectives (docs/unsupervised.md)."""
    s = MelboSettings(source_layer=0, target_layer=2, steps=30, radius=2.0)
    seq = train_melbo(lm, PROMPTS, 4, s, system=SYSTEM, seed=5)  # default: one at a time
    # (that the sequential result is the original algorithm: test_sliced_trainer_equals_the_original_...)
    par = train_melbo(lm, PROMPTS, 4, s.model_copy(update={"vector_batch_size": 4}), system=SYSTEM, seed=5)
    vs, vp = (torch.stack([v.vector for v in r.vectors.values()]) / 2.0 for r in (seq, par))
    for v in (vs, vp):
        assert (v @ v.T - torch.eye(4)).abs().max() < 1e-5  # both orthonormal
    assert (vs[0] - vp[0]).abs().max() <= 1e-5  # the first vector has nothing to be orthogonal to
    assert seq.objective[0] == pytest.approx(par.objective[0], rel=1e-5)
    cos = (vs[1:] * vp[1:]).sum(-1).abs()
    assert (cos < 0.999).all(), cos  # the later vectors are not the sequential ones
    for r in (seq, par):
        assert [v.meta.extra["objective_final"] for v in r.vectors.values()] == [c[-1] for c in r.objective]


def _reference_melbo(lm, prompts, n, s, seed):
    """The original algorithm by hand: one vector at a time, one prompt per full forward pass, AdamW
    (betas .9/.98, amsgrad), gradient projected onto the complement of earlier vectors and the sphere's tangent."""
    source, target = s.layers(lm.n_layers)
    d = lm.hidden_size
    batches = [lm.tokenize([lm.format(p, SYSTEM)]) for p in prompts]
    k = int(s.positions.split(":")[1])
    with torch.no_grad():
        base = [lm.forward_to_layer(b, target)[:, -k:] for b in batches]
    learned = torch.zeros(0, d)
    for i in range(n):
        x = torch.randn(d, generator=torch.Generator().manual_seed(vector_seed(seed, "melbo", i)))
        if learned.shape[0]:
            u = learned / s.radius
            x = x - u.T @ (u @ x)
        bias = (x / x.norm() * s.radius).requires_grad_(True)
        opt = torch.optim.AdamW([bias], lr=s.lr, betas=(0.9, 0.98), weight_decay=0.0, amsgrad=True)
        for _ in range(s.steps):
            opt.zero_grad()
            for b, ref in zip(batches, base):
                h = lm.forward_to_layer(b, target, [Add(bias, layers=source, site=s.site)], grad=True)[:, -k:]
                (-((h - ref).norm(dim=-1).pow(s.p).sum().pow(1 / s.q))).backward()
            with torch.no_grad():
                if learned.shape[0]:
                    u = learned / s.radius
                    bias.grad -= u.T @ (u @ bias.grad)
                bias.grad -= (bias.grad @ bias) * bias / s.radius**2
            opt.step()
            with torch.no_grad():
                if learned.shape[0]:
                    u = learned / s.radius
                    bias -= u.T @ (u @ bias)
                bias.copy_(bias / bias.norm() * s.radius)
        learned = torch.cat([learned, bias.detach()[None]])
    return learned


def test_sliced_trainer_equals_the_original_algorithm_on_full_passes(lm):
    s = MelboSettings(
        source_layer=0,
        target_layer=2,
        positions="last:2",
        p=2,
        q=2,
        optimizer="adamw",
        lr=0.05,
        steps=15,
        orthogonal=True,
        vector_batch_size=1,
        radius=1.5,
    )
    ours = train_melbo(lm, PROMPTS, 3, s, system=SYSTEM, seed=2)
    ref = _reference_melbo(lm, PROMPTS, 3, s, seed=2)
    got = torch.stack([v.vector for v in ours.vectors.values()])
    assert (got - ref).abs().max() <= 1e-4


def test_padded_prompts_score_as_if_each_were_alone(lm):
    theta = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(0))
    add = Add(theta, layers=0, site="mlp_out")

    def objective(prompts):
        sl = LayerSlice(lm, training_batch(lm, prompts, SYSTEM), 0, 2)
        return melbo_objective(sl.run([add]), sl.unsteered, objective_mask(sl, "last:3"), 2.0, 8.0)

    together = objective(PROMPTS)  # left-padded batch
    alone = torch.cat([objective([p]) for p in PROMPTS])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_bad_settings_are_clear_errors(lm):
    with pytest.raises(ValueError, match="last:K"):
        MelboSettings(positions="first:2")
    with pytest.raises(ValueError):
        MelboSettings(radius=0)
    with pytest.raises(InputError, match="at least 1"):
        train_melbo(lm, PROMPTS, 0)
    with pytest.raises(InputError, match="training prompt"):
        train_melbo(lm, [], 1)
    with pytest.raises(InputError, match="do not fit"):
        train_melbo(lm, PROMPTS, lm.hidden_size + 1, MelboSettings(orthogonal=True))
