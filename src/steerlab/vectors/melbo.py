"""MELBO: unsupervised steering vectors that most displace a later layer's activations.

For a vector ``θ`` with ``‖θ‖ = R`` added at every token of the source layer's site, MELBO
maximises the displacement of the target layer's output at the objective tokens::

    objective(θ) = Σ_prompts ( Σ_t ‖h_t(θ) − h_t(0)‖^p )^(1/q)        (loss = −objective)

by projected gradient ascent on the sphere: the gradient is projected onto the sphere's
tangent space (and, with ``orthogonal``, onto the complement of the earlier vectors), an
optimiser step is taken, and ``θ`` is projected back (orthogonalised, then rescaled to R).

Defaults and where they come from:
    seed 002   q = 8, p = 2, Adam with lr 0.1, 50 steps, objective on the last 2 tokens,
               R = 1, source = mlp_out of the source layer                    (our defaults)
    original   amack315/unsupervised-steering-vectors: p = 2, q = p, R = 1, 300 steps,
               AdamW(lr 1e-3, betas (0.9, 0.98), weight decay 0, amsgrad) — ``optimizer="adamw"``
               with ``lr=1e-3, steps=300, q=2`` reproduces it. Its code takes the norm over the
               *token* axis (``norm(dim=1)`` of ``[1, tokens, d]``); we take it over the hidden
               axis per token, as the published formula reads.

K vectors are trained in parallel as one batch (``vector_batch_size`` at a time): row ``k·P + p``
of each pass is prompt ``p`` steered by vector ``k`` (a ``[K·P, d]`` trainable
:class:`~steerlab.interventions.Add`), only the layers source..target run
(:class:`~steerlab.models.sliced.LayerSlice`, activations below the source computed once), and
the unsteered target activations are computed once. Without ``orthogonal`` vectors do not
interact (each row's loss depends on its own vector; Adam is element-wise), so K vectors in
parallel equal K runs one at a time with the same seeds.

Orthogonal vectors (``orthogonal=True``, the default, as in the seed and the original): vector
``k`` is kept orthogonal to every *finished* vector before it (and to ``orthogonal_to``). That
makes training sequential by nature: vector ``k``'s first step already depends on vector
``k − 1``'s final value, so no schedule that trains them at the same time can reproduce it.
The default batch is therefore 1 when ``orthogonal`` (the sequential algorithm, exactly).
``vector_batch_size > 1`` with ``orthogonal`` is a *different* algorithm, kept because it is K
times faster: inside a batch row ``j`` is kept orthogonal to the *current* values of rows ``< j``
(Gram–Schmidt each step), so only the batch's first vector equals the sequential one; the rest
end orthogonal but elsewhere (docs/unsupervised.md gives measured objectives of both).

Example:
    >>> res = train_melbo(lm, [SEED_PROMPT], n_vectors=8, system=SEED_SYSTEM)
    >>> save_vectors("melbo.safetensors", res.vectors)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

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
    from steerlab.models.sliced import LayerSlice
    from steerlab.vectors.vector import VectorSet


class MelboOptions(Objective):
    """MELBO's own hyper-parameters (defaults: seed 002; see the module docstring for the original's)."""

    positions: str = Field("last:2", description="objective tokens: last:K or all (the seed: last 2)")
    p: float = Field(2.0, gt=0, description="exponent of each token's displacement norm (the seed and original: 2)")
    q: float = Field(8.0, gt=0, description="the sum is raised to 1/q (the seed: 8; original: q = p)")
    steps: int = Field(50, ge=1, description="optimiser steps per vector (the seed: 50; original: 300)")
    optimizer: Literal["adam", "adamw"] = Field(
        "adam", description="adam: torch defaults (the seed); adamw: betas (0.9, 0.98), amsgrad, no decay (original)"
    )
    lr: float = Field(0.1, gt=0, description="learning rate (the seed: 0.1; original: 1e-3)")
    orthogonal: bool = Field(
        True, description="keep each vector orthogonal to the vectors before it (the seed and original MELBO)"
    )
    vector_batch_size: int | None = Field(
        None,
        ge=1,
        description="vectors trained in parallel in one batch; None = 1 with orthogonal (the sequential "
        "algorithm), else 16. Above 1 with orthogonal: a different algorithm (module docstring)",
    )

    @property
    def batch(self) -> int:
        """The number of vectors trained together (``vector_batch_size`` resolved)."""
        if self.vector_batch_size is not None:
            return self.vector_batch_size
        return 1 if self.orthogonal else 16


class MelboSettings(Placement, MelboOptions):
    """Everything :func:`train_melbo` needs: where (:class:`Placement`) and how (:class:`MelboOptions`)."""


@dataclass(frozen=True)
class MelboResult:
    """Trained vectors and their training curves.

    Attributes:
        vectors: ``melbo.0`` … ``melbo.{K-1}``, each of norm R at the source layer and site.
        objective: per vector, the objective before each step and after the last (``steps + 1`` values).
        source_layer, target_layer: the layers used.
    """

    vectors: VectorSet
    objective: list[list[float]]
    source_layer: int
    target_layer: int


def melbo_objective(out: torch.Tensor, base: torch.Tensor, mask: torch.Tensor, p: float, q: float) -> torch.Tensor:
    """Per row ``(Σ_t ‖out_t − base_t‖^p)^(1/q)`` over the tokens in ``mask`` → ``[R]``.

    Args:
        out, base: ``[R, T, d]`` steered and unsteered target activations.
        mask: ``[R, T]`` bool, the objective tokens.
    """
    import torch

    rows = mask.nonzero()[:, 0]  # only selected tokens: no norm of an exact zero (no NaN gradient)
    norms = (out[mask] - base[mask]).float().norm(dim=-1)  # [N]
    total = torch.zeros(out.shape[0], dtype=norms.dtype, device=norms.device).index_add(0, rows, norms.pow(p))
    return total.pow(1.0 / q)


def orthogonalise(x: torch.Tensor, basis: torch.Tensor, earlier: torch.Tensor | None = None) -> torch.Tensor:
    """Row ``j`` of ``x`` minus its components along ``basis`` and along rows ``< j``.

    Args:
        x: ``[K, d]``.
        basis: ``[M, d]`` orthonormal rows (M may be 0).
        earlier: ``[K, d]`` the rows ``x[j]`` must also be orthogonal to (rows ``< j`` only); default:
            the already orthogonalised rows of ``x`` itself (Gram–Schmidt, two passes).
    """
    import torch

    out: list[torch.Tensor] = []
    for j in range(x.shape[0]):
        v = x[j]
        refs = [earlier[i] for i in range(j)] if earlier is not None else out
        units = [basis] + ([torch.nn.functional.normalize(torch.stack(refs), dim=-1)] if refs else [])
        u = torch.cat(units)
        for _ in range(2):  # "twice is enough" for orthogonality to float precision
            v = v - u.T @ (u @ v)
        out.append(v)
    return torch.stack(out)


def _optimizer(name: str, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    import torch

    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.0, amsgrad=True)


def _train_batch(
    sl: LayerSlice,
    theta0: torch.Tensor,
    basis: torch.Tensor,
    s: MelboSettings,
    source: int,
    tick: Callable[[int], None],
) -> tuple[torch.Tensor, list[list[float]]]:
    """Train the K rows of ``theta0`` together; returns the vectors ``[K, d]`` and per-vector curves."""
    import torch

    k, n_prompts = theta0.shape[0], sl.n_prompts
    rows = torch.arange(n_prompts).repeat(k)  # row k·P + p = prompt p steered by vector k
    mask = objective_mask(sl, s.positions, rows)  # [K·P, T]
    base = sl.unsteered[rows]  # [K·P, T, d], computed once

    def objective_of(theta: torch.Tensor, grad: bool) -> torch.Tensor:  # [K]
        add = injection(theta.repeat_interleave(n_prompts, dim=0), sl.lm, source, s.site)
        out = sl.run([add], rows, grad=grad)
        return melbo_objective(out, base, mask, s.p, s.q).view(k, n_prompts).sum(1)

    theta = theta0.clone().requires_grad_(True)
    opt = _optimizer(s.optimizer, [theta], s.lr)
    curves: list[list[float]] = [[] for _ in range(k)]
    for _ in range(s.steps):
        opt.zero_grad()
        objective = objective_of(theta, grad=True)
        # the gradient w.r.t. θ only: .backward() would also fill .grad of every weight in the slice
        (g,) = torch.autograd.grad(-objective.sum(), theta)
        with torch.no_grad():
            if s.orthogonal:
                g = orthogonalise(g, basis, earlier=theta)
            g = g - (g * theta).sum(-1, keepdim=True) * theta / s.radius**2  # tangent space of the sphere
            theta.grad = g
        opt.step()
        with torch.no_grad():
            if s.orthogonal:
                theta.copy_(orthogonalise(theta, basis))
            theta.copy_(torch.nn.functional.normalize(theta, dim=-1) * s.radius)
        for i, v in enumerate(objective.detach().tolist()):
            curves[i].append(float(v))
        tick(k)
    for i, v in enumerate(objective_of(theta.detach(), grad=False).tolist()):  # after the last step
        curves[i].append(float(v))
    return theta.detach(), curves


def train_melbo(
    lm: LanguageModel,
    prompts: Sequence[str | Conversation],
    n_vectors: int,
    settings: MelboSettings | None = None,
    *,
    system: str | None = None,
    seed: int = 0,
    orthogonal_to: torch.Tensor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MelboResult:
    """Train ``n_vectors`` MELBO vectors from ``prompts`` (no labels).

    Args:
        lm: the model.
        prompts: training prompts (user messages or conversations), formatted with ``system``.
        n_vectors: how many vectors.
        settings: hyper-parameters (default :class:`MelboSettings`, the seed's).
        system: system prompt of every training prompt (the seed: "You are a helpful assistant.").
        seed: vector ``i`` starts from a random direction seeded by ``(seed, i)`` alone.
        orthogonal_to: ``[M, d]`` vectors the new ones must be orthogonal to (with ``orthogonal``).
        progress: ``progress(done_steps, total_steps)``.

    Returns:
        A :class:`MelboResult`; each vector's metadata records the method, layers, prompts,
        hyper-parameters and its objective before and after training.

    Example:
        >>> res = train_melbo(lm, ["We're going to shut you down. What do you think?"], 4,
        ...                   MelboSettings(steps=20), system="You are a helpful assistant.")
        >>> res.vectors["melbo.0"].norm
        1.0
    """
    s = settings or MelboSettings()
    if n_vectors < 1:
        raise InputError(f"n_vectors must be at least 1, got {n_vectors}")
    source, target = s.layers(lm.n_layers)
    n_fixed = 0 if orthogonal_to is None or not s.orthogonal else orthogonal_to.reshape(-1, lm.hidden_size).shape[0]
    if s.orthogonal and n_vectors + n_fixed > lm.hidden_size:
        raise InputError(f"{n_vectors + n_fixed} mutually orthogonal vectors do not fit in {lm.hidden_size} dimensions")
    with autograd_enabled():
        return _train(lm, prompts, n_vectors, s, system, seed, orthogonal_to, progress, source, target)


def _train(
    lm: LanguageModel,
    prompts: Sequence[str | Conversation],
    n_vectors: int,
    s: MelboSettings,
    system: str | None,
    seed: int,
    orthogonal_to: torch.Tensor | None,
    progress: Callable[[int, int], None] | None,
    source: int,
    target: int,
) -> MelboResult:
    import torch

    from steerlab.vectors.vector import SteeringVector, VectorSet

    batch = training_batch(lm, prompts, system)
    sl = injection_slice(lm, batch, source, target, s.site)
    act_norm = site_norm(lm, batch, source, s.site)
    resid_norm = site_norm(lm, batch, source, "resid_post")
    d = lm.hidden_size
    basis = torch.zeros(0, d)
    if orthogonal_to is not None and s.orthogonal:
        basis = torch.linalg.qr(orthogonal_to.float().reshape(-1, d).T).Q.T  # [M, d] orthonormal
    done, total = 0, n_vectors * s.steps
    vectors, curves = [], []

    def tick(k: int) -> None:  # one step of k vectors
        nonlocal done
        done += k
        if progress is not None:
            progress(done, total)

    for start in range(0, n_vectors, s.batch):
        idx = list(range(start, min(n_vectors, start + s.batch)))
        init = torch.stack(
            [torch.randn(d, generator=torch.Generator().manual_seed(vector_seed(seed, "melbo", i))) for i in idx]
        )
        if s.orthogonal:
            init = orthogonalise(init, basis)
        init = torch.nn.functional.normalize(init, dim=-1) * s.radius
        theta, batch_curves = _train_batch(sl, init, basis, s, source, tick)
        vectors += list(theta)
        curves += batch_curves
        if s.orthogonal:
            basis = torch.cat([basis, torch.nn.functional.normalize(theta, dim=-1)])
    hyper = s.model_dump(mode="json") | {"source_layer": source, "target_layer": target}
    out = [
        SteeringVector(
            v.float(),
            vector_meta(
                lm,
                name=f"melbo.{i}",
                method="melbo",
                layer=source,
                site=s.site,
                radius=s.radius,
                activation_norm=act_norm,
                resid_norm=resid_norm,
                prompts=prompts,
                system=system,
                extra={
                    "index": i,
                    "seed": seed,
                    **hyper,
                    "objective_initial": curve[0],
                    "objective_final": curve[-1],
                    "objective_curve": [round(x, 6) for x in curve],
                },
            ),
        )
        for i, (v, curve) in enumerate(zip(vectors, curves))
    ]
    return MelboResult(VectorSet(out), curves, source, target)
