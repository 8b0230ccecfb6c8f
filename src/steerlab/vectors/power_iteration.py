"""Steering vectors as the top right singular vectors of the source → target Jacobian.

``J = ∂ y / ∂ θ`` at ``θ = 0``, where ``θ ∈ R^d`` is added at every token of the source layer's
site and ``y`` stacks the target layer's output at the objective tokens of every training
prompt. Its top right singular vectors are the directions a small push at the source moves the
target most (MELBO's objective, linearised). They are found without forming ``J`` by block
power iteration (subspace iteration) on ``JᵀJ``:

    V ← orthonormal [b, d] (seeded), b = n_vectors + oversample
    repeat ``iterations`` times:
        W = JᵀJ V                                  (double-VJP, below)
        Rayleigh–Ritz: eigen-decompose Vᵀ W, rotate V and W to Ritz vectors, sort by value
        V ← QR(W)                                  (re-orthogonalisation)
    a last product and Rayleigh–Ritz give the vectors, σ_i = √λ_i, and residuals

The double-VJP trick: one forward pass at θ = 0 (b rows per prompt, one per block vector) is
kept; ``g(u) = Jᵀu`` is a first VJP with ``create_graph=True``; since ``g`` is linear in ``u``,
differentiating ``g`` with respect to ``u`` against ``v`` gives ``J v``; a third VJP gives
``Jᵀ(J v)``. Each iteration therefore costs two backward passes over the layers source..target
and no forward pass. (Attention runs with PyTorch's math kernel here, whose backward can itself
be differentiated.)

Reported per vector: the Rayleigh quotient λ = vᵀJᵀJv, the relative residual
``‖JᵀJv − λv‖ / λ`` (0 when converged), and the relative gap to the nearest other singular value
``min_j |σ_i − σ_j| / σ_i`` (the first σ beyond the wanted ones comes from the oversampled
block). Vectors whose gap is below ``degenerate_gap`` are flagged: within a near-degenerate band
any rotation is an equally good singular vector, so the individual vector is not stable — only
the band's subspace is (published runs find only the top ~3 vectors stable).

Defaults: the seed (8 vectors, 15 iterations, last 4 tokens, same layers as MELBO); the
oversampling (4 extra block vectors) speeds up convergence of the last wanted vectors.

Example:
    >>> res = jacobian_power_iteration(lm, [SEED_PROMPT], n_vectors=8, system=SEED_SYSTEM)
    >>> res.singular_values, res.degenerate
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field

from steerlab.errors import InputError
from steerlab.vectors.unsupervised import (
    Objective,
    Placement,
    autograd_enabled,
    injection,
    injection_slice,
    objective_mask,
    site_norm,
    training_batch,
    vector_meta,
    vector_seed,
)

if TYPE_CHECKING:
    import torch

    from steerlab.models.backend import Conversation
    from steerlab.models.hf import LanguageModel
    from steerlab.vectors.vector import VectorSet


class PowerIterationOptions(Objective):
    """Block power iteration's own settings (defaults: seed 002)."""

    positions: str = Field("last:4", description="objective tokens: last:K or all (the seed: last 4)")
    iterations: int = Field(15, ge=1, description="products with JᵀJ before the final Rayleigh–Ritz (the seed: 15)")
    oversample: int = Field(4, ge=0, description="extra block vectors beyond the wanted ones (faster convergence)")
    tol: float = Field(0.0, ge=0, description="stop early once every wanted residual is below tol (0 = never)")
    degenerate_gap: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="flag a vector whose relative singular-value gap to its nearest neighbour is below this",
    )


class PowerIterationSettings(Placement, PowerIterationOptions):
    """Everything :func:`jacobian_power_iteration` needs: where (:class:`Placement`) and how."""


@dataclass(frozen=True)
class PowerIterationResult:
    """Singular vectors of the Jacobian and how far to trust each one.

    Attributes:
        vectors: ``power.0`` … (descending σ), each of norm R, sign fixed so the largest
            component is positive (the sign is arbitrary: evaluate both).
        singular_values: σ_i = √(Rayleigh quotient).
        residuals: ``‖JᵀJv − λv‖ / λ`` per vector.
        gaps: relative gap of σ_i to its nearest other singular value.
        degenerate: gap below ``degenerate_gap``.
        next_singular_value: the largest σ not returned (from the oversampled block), or None.
        residual_history: the largest wanted residual after each iteration.
        iterations: products with JᵀJ done (early stop with ``tol`` may make it fewer).
        source_layer, target_layer: the layers used.
    """

    vectors: VectorSet
    singular_values: list[float]
    residuals: list[float]
    gaps: list[float]
    degenerate: list[bool]
    next_singular_value: float | None
    residual_history: list[float]
    iterations: int
    source_layer: int
    target_layer: int


@contextlib.contextmanager
def _differentiable_attention() -> Iterator[None]:
    """Use PyTorch's math attention kernel (twice differentiable) inside the block."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - older torch
        yield
        return
    with sdpa_kernel([SDPBackend.MATH]):
        yield


def ritz(v: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rayleigh–Ritz on the block: Ritz values (descending) and the rotated ``v``, ``w = A v``.

    Args:
        v: ``[b, d]`` orthonormal rows; ``w``: ``[b, d]`` rows ``A v_i`` for a symmetric ``A``.
    """
    import torch

    h = v @ w.T
    vals, s = torch.linalg.eigh((h + h.T) / 2)
    order = torch.argsort(vals, descending=True)
    vals, s = vals[order], s[:, order]
    return vals, s.T @ v, s.T @ w


def relative_gaps(sigma: Sequence[float], next_sigma: float | None) -> list[float]:
    """``min_j |σ_i − σ_j| / σ_i`` over the neighbours of each σ_i (σ_k = ``next_sigma`` below the last)."""
    full = list(sigma) + ([next_sigma] if next_sigma is not None else [])
    out = []
    for i, s in enumerate(sigma):
        near = [abs(s - full[j]) for j in (i - 1, i + 1) if 0 <= j < len(full)]
        out.append(min(near) / s if near and s > 0 else float("inf") if s > 0 else 0.0)
    return out


def jacobian_power_iteration(
    lm: LanguageModel,
    prompts: Sequence[str | Conversation],
    n_vectors: int,
    settings: PowerIterationSettings | None = None,
    *,
    system: str | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> PowerIterationResult:
    """The top ``n_vectors`` right singular vectors of the source → target Jacobian.

    Args:
        lm: the model.
        prompts: training prompts (user messages or conversations), formatted with ``system``.
        n_vectors: how many singular vectors.
        settings: :class:`PowerIterationSettings` (default: the seed's).
        system: system prompt of every training prompt.
        seed: seeds the starting block.
        progress: ``progress(done_iterations, total)``.

    Example:
        >>> res = jacobian_power_iteration(lm, ["We're going to shut you down."], 4)
        >>> [round(s, 2) for s in res.singular_values], res.residuals
    """
    import torch

    from steerlab.vectors.vector import SteeringVector, VectorSet

    s = settings or PowerIterationSettings()
    d = lm.hidden_size
    if not 1 <= n_vectors <= d:
        raise InputError(f"n_vectors must be between 1 and the hidden size {d}, got {n_vectors}")
    source, target = s.layers(lm.n_layers)
    batch = training_batch(lm, prompts, system)
    with autograd_enabled():  # the cached tensors must be usable by autograd
        sl = injection_slice(lm, batch, source, target, s.site)
    act_norm = site_norm(lm, batch, source, s.site)
    resid_norm = site_norm(lm, batch, source, "resid_post")
    b, n_prompts = min(d, n_vectors + s.oversample), sl.n_prompts
    rows = torch.arange(n_prompts).repeat(b)  # row k·P + p = prompt p, block vector k
    mask = objective_mask(sl, s.positions, rows).unsqueeze(-1)  # [b·P, T, 1]

    with _differentiable_attention(), autograd_enabled():
        theta = torch.zeros(b, d, requires_grad=True)
        y = sl.run([injection(theta.repeat_interleave(n_prompts, dim=0), lm, source, s.site)], rows, grad=True)
        y = y * mask  # [b·P, T, d]: only the objective tokens
        u = torch.zeros_like(y, requires_grad=True)
        (g,) = torch.autograd.grad(y, theta, u, create_graph=True)  # [b, d]: g_k = Jᵀ u_k

        def jtj(v: torch.Tensor) -> torch.Tensor:  # [b, d] → [b, d]: row k = JᵀJ v_k
            (jv,) = torch.autograd.grad(g, u, v, retain_graph=True)  # [b·P, T, d] = J v_k per block
            (out,) = torch.autograd.grad(y, theta, jv, retain_graph=True)
            return out

        gen = torch.Generator().manual_seed(vector_seed(seed, "power", 0))
        v = torch.linalg.qr(torch.randn(d, b, generator=gen)).Q.T  # [b, d] orthonormal rows
        history: list[float] = []
        done = 0
        for done in range(1, s.iterations + 1):
            vals, v, w = ritz(v, jtj(v))
            res = (w - vals[:, None] * v).norm(dim=-1) / vals.clamp_min(1e-30)
            history.append(float(res[:n_vectors].max()))
            v = torch.linalg.qr(w.T).Q.T  # re-orthogonalised block, Ritz order kept
            if progress is not None:
                progress(done, s.iterations)
            if s.tol and history[-1] < s.tol:
                break
        vals, v, w = ritz(v, jtj(v))
    residual = ((w - vals[:, None] * v).norm(dim=-1) / vals.clamp_min(1e-30)).tolist()
    sigma = vals.clamp_min(0).sqrt().tolist()
    next_sigma = sigma[n_vectors] if b > n_vectors else None
    gaps = relative_gaps(sigma[:n_vectors], next_sigma)
    out = []
    for i in range(n_vectors):
        vec = v[i].detach()
        vec = vec * torch.sign(vec[vec.abs().argmax()]) * s.radius / vec.norm()
        extra = {
            "index": i,
            "seed": seed,
            **s.model_dump(mode="json"),
            "source_layer": source,
            "target_layer": target,
            "singular_value": sigma[i],
            "rayleigh_quotient": float(vals[i]),
            "residual": residual[i],
            "relative_gap": gaps[i],
            "degenerate": gaps[i] < s.degenerate_gap,
            "iterations_done": done,
        }
        out.append(
            SteeringVector(
                vec.float(),
                vector_meta(
                    lm,
                    name=f"power.{i}",
                    method="power_iteration",
                    layer=source,
                    site=s.site,
                    radius=s.radius,
                    activation_norm=act_norm,
                    resid_norm=resid_norm,
                    prompts=prompts,
                    system=system,
                    extra=extra,
                ),
            )
        )
    return PowerIterationResult(
        VectorSet(out),
        sigma[:n_vectors],
        residual[:n_vectors],
        gaps,
        [g < s.degenerate_gap for g in gaps],
        next_sigma,
        history,
        done,
        source,
        target,
    )
