"""Add a vector to the residual stream: h ← h + strength · v at chosen layers, site and positions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from steerlab.errors import InputError
from steerlab.interventions.base import Intervention, as_row_tensor, check_finite_output, resolve_layers
from steerlab.interventions.hooks import HookEntry
from steerlab.interventions.positions import PositionInfo, PositionSpec, parse_positions
from steerlab.models.layers import Site, check_site, hidden_size


@dataclass
class Add(Intervention):
    """Steer by activation addition.

    Args:
        vector: ``[d]`` (same vector for every row), ``[B, d]`` (one per row), or a
            :class:`~steerlab.vectors.SteeringVector` (its layer and site become the defaults).
            A tensor that requires grad is differentiated through (e.g. to train a vector).
        strength: a float, or one float per row (``[B]``) so a strength sweep runs as one batch.
        layers: layer index, list of indices, or ``"all"``; defaults to the vector's layer.
        site: ``resid_pre``, ``resid_post`` (default), ``attn_out`` or ``mlp_out``.
        positions: which tokens: ``"all"`` (default), ``"prompt"``, ``"generated"``, ``"last:K"``, ...

    Strengths and vectors must be finite; a strength so large that the steered activations
    overflow raises :class:`~steerlab.errors.InputError` instead of generating garbage.

    Example:
        >>> with Add(vec, strength=[0, 2, 4, 8], layers=6).on(lm.model):
        ...     out = lm.model(**batch_of_4)
    """

    vector: Any
    strength: float | Sequence[float] | torch.Tensor = 1.0
    layers: int | Sequence[int] | str | None = None
    site: Site | None = None
    positions: PositionSpec | Sequence[int] = "all"

    def _vector_tensor(self) -> torch.Tensor:
        v = getattr(self.vector, "vector", self.vector)
        v = v if isinstance(v, torch.Tensor) else torch.as_tensor(v, dtype=torch.float32)
        if v.dim() not in (1, 2):
            raise InputError(f"Add: vector must be [d] or [B, d], got shape {tuple(v.shape)}")
        if not torch.isfinite(v.detach()).all():
            raise InputError("Add: the vector has NaN or infinite values")
        return v

    def entries(self, model: nn.Module) -> list[HookEntry]:
        v = self._vector_tensor()
        d = hidden_size(model)
        if v.shape[-1] != d:
            raise InputError(f"Add: vector has size {v.shape[-1]} but the model's hidden size is {d}")
        site = check_site(self.site or getattr(self.vector, "site", None) or "resid_post")
        layers = resolve_layers(model, self.layers, getattr(self.vector, "layer", None))
        strength = as_row_tensor(self.strength, "Add: strength")
        if v.dim() == 2 and strength.dim() == 1 and strength.shape[0] != v.shape[0]:
            raise InputError(f"Add: {v.shape[0]} per-row vectors but {strength.shape[0]} per-row strengths")
        pos = parse_positions(self.positions)
        # The delta is cached per (device, dtype) unless gradients must flow through it.
        trainable = v.requires_grad or strength.requires_grad
        cache: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

        def delta_for(h: torch.Tensor) -> torch.Tensor:
            key = (h.device, h.dtype)
            if trainable or key not in cache:
                vv = v.to(device=h.device, dtype=h.dtype)
                ss = strength.to(device=h.device, dtype=h.dtype)
                # [1 or B, 1, d] = strength · vector, one row per batch row when per-row
                delta = (ss.reshape(-1, 1) * vv.reshape(-1, vv.shape[-1])).unsqueeze(1)
                if trainable:
                    return delta
                cache[key] = delta
            return cache[key]

        def make(layer: int) -> Callable[[torch.Tensor, PositionInfo], torch.Tensor]:
            def fn(h: torch.Tensor, info: PositionInfo) -> torch.Tensor:
                delta = delta_for(h)
                if delta.shape[0] not in (1, h.shape[0]):
                    raise InputError(
                        f"Add: per-row strengths/vectors for {delta.shape[0]} rows but the batch has {h.shape[0]}"
                    )
                mask = pos.mask(info).unsqueeze(-1).to(h.dtype)  # [B, T, 1]
                return check_finite_output(h + mask * delta, h, f"Add at layer {layer} ({site})")

            return fn

        return [HookEntry(layer, site, make(layer)) for layer in layers]
