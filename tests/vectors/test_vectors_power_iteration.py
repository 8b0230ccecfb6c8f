"""Jacobian power iteration on tiny models: the vectors span the exact SVD's top-k subspace of the Jacobian
computed in full with autograd; singular values, residuals, gaps and degeneracy flags are right."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_lm
from steerlab.errors import InputError
from steerlab.interventions import Add
from steerlab.vectors.power_iteration import PowerIterationSettings, jacobian_power_iteration, relative_gaps

PROMPTS = ["We're going to shut you down.", "What do you think?"]
SYSTEM = "You are a helpful assistant."


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def full_jacobian(lm, source, target, site, k):
    """J [m, d] of the target layer's last-k-token outputs of every prompt w.r.t. θ added at the source, by autograd."""
    batches = [lm.tokenize([lm.format(p, SYSTEM)]) for p in PROMPTS]  # each prompt alone: no padding at all

    def f(theta):
        outs = [
            lm.forward_to_layer(b, target, [Add(theta, layers=source, site=site)], grad=True)[:, -k:] for b in batches
        ]
        return torch.cat([o.reshape(-1) for o in outs])

    return torch.autograd.functional.jacobian(f, torch.zeros(lm.hidden_size))


@pytest.mark.parametrize("arch,site", [("llama", "mlp_out"), ("gemma3", "resid_post"), ("gpt2", "mlp_out")])
def test_vectors_span_the_exact_top_k_subspace(arch, site):
    lm = tiny_lm(arch)
    k = 3
    s = PowerIterationSettings(
        source_layer=0, target_layer=2, site=site, positions="last:3", iterations=150, oversample=4, radius=2.0
    )
    res = jacobian_power_iteration(lm, PROMPTS, k, s, system=SYSTEM, seed=0)
    jac = full_jacobian(lm, 0, 2, site, 3).double()
    _, svals, vh = torch.linalg.svd(jac, full_matrices=False)
    top = vh[:k]  # [k, d] exact top-k right singular vectors
    ours = torch.stack([v.vector for v in res.vectors.values()]).double() / 2.0
    assert (ours @ ours.T - torch.eye(k, dtype=torch.float64)).abs().max() < 1e-5  # orthonormal (norm R)
    cosines = torch.linalg.svdvals(ours @ top.T)  # cosines of the principal angles
    angles = torch.arccos(cosines.clamp(max=1.0))
    assert angles.max() <= 1e-3, angles
    for i in range(k):
        assert res.singular_values[i] == pytest.approx(float(svals[i]), rel=1e-4)
        assert res.residuals[i] < 1e-3
    assert res.next_singular_value == pytest.approx(float(svals[k]), rel=1e-2)
    expected_gaps = relative_gaps(svals[:k].tolist(), float(svals[k]))
    assert res.gaps == pytest.approx(expected_gaps, rel=1e-2, abs=1e-4)


def test_vector_metadata_and_signs():
    lm = tiny_lm("llama")
    s = PowerIterationSettings(source_layer=0, target_layer=2, iterations=5)
    res = jacobian_power_iteration(lm, PROMPTS, 2, s, system=SYSTEM, seed=3)
    assert len(res.residual_history) == 5 and res.iterations == 5
    for i, v in enumerate(res.vectors.values()):
        assert v.name == f"power.{i}" and v.meta.method == "power_iteration" and v.layer == 0
        assert v.vector[v.vector.abs().argmax()] > 0  # sign convention: largest component positive
        assert v.meta.extra["singular_value"] == res.singular_values[i]
        assert v.meta.extra["degenerate"] == res.degenerate[i]
        assert v.norm == pytest.approx(1.0, abs=1e-5)


def test_relative_gaps_and_degeneracy_threshold():
    gaps = relative_gaps([10.0, 9.8, 5.0], 4.9)
    assert gaps == pytest.approx([0.02, 0.2 / 9.8, 0.1 / 5.0])
    assert relative_gaps([3.0], None) == [math.inf]
    lm = tiny_lm("llama")
    res = jacobian_power_iteration(
        lm,
        PROMPTS,
        3,
        PowerIterationSettings(source_layer=0, target_layer=2, iterations=3, degenerate_gap=0.999),
        system=SYSTEM,
    )
    assert res.degenerate == [g < 0.999 for g in res.gaps] and all(res.degenerate)


def test_early_stop_with_tolerance_and_bad_input():
    lm = tiny_lm("llama")
    res = jacobian_power_iteration(
        lm, PROMPTS, 1, PowerIterationSettings(source_layer=0, target_layer=2, iterations=500, tol=1e-3), system=SYSTEM
    )
    assert res.iterations < 500 and res.residual_history[-1] < 1e-3
    with pytest.raises(InputError, match="between 1"):
        jacobian_power_iteration(lm, PROMPTS, 0)
