"""Directional ablation: remove a direction from the residual stream, h ← h − (h·r̂) r̂."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from steerlab.errors import InputError
from steerlab.interventions.base import Intervention, resolve_layers
from steerlab.interventions.hooks import HookEntry
from steerlab.interventions.positions import PositionInfo, PositionSpec, parse_positions
from steerlab.models.layers import Site, check_site, hidden_size

#: The residual stream's input at every layer plus every write into it: with all three
#: ablated at every layer, no component along the direction survives anywhere in the stream.
EVERY_RESIDUAL_WRITE: tuple[Site, ...] = ("resid_pre", "attn_out", "mlp_out")


@dataclass
class Ablate(Intervention):
    """Project a direction out of the residual stream (Arditi et al. 2024, directional ablation).

    Args:
        direction: ``[d]`` tensor or a SteeringVector (one direction for every row), or ``[B, d]``
            (one direction per row, e.g. to score many candidate directions in one batch). Each
            direction is normalised to unit length; a per-row direction of all zeros leaves that
            row untouched.
        layers: ``"all"`` (default) or layer indices.
        sites: which sites; default every residual write (``resid_pre``, ``attn_out``, ``mlp_out``).
        positions: which tokens (default all).
    """

    direction: Any
    layers: int | Sequence[int] | str = "all"
    sites: Sequence[Site] = EVERY_RESIDUAL_WRITE
    positions: PositionSpec | Sequence[int] = "all"

    def _unit_directions(self, model: nn.Module) -> torch.Tensor:
        r = getattr(self.direction, "vector", self.direction)
        r = (r if isinstance(r, torch.Tensor) else torch.as_tensor(r)).float()
        d = hidden_size(model)
        if r.dim() not in (1, 2) or r.shape[-1] != d:
            raise InputError(f"Ablate: direction must be [{d}] or [B, {d}], got {tuple(r.shape)}")
        if not torch.isfinite(r.detach()).all():
            raise InputError("Ablate: the direction has NaN or infinite values")
        norm = r.norm(dim=-1, keepdim=True)  # [1] or [B, 1]
        if r.dim() == 1 and float(norm) == 0:
            raise InputError("Ablate: direction has zero norm")
        return r / torch.where(norm > 0, norm, torch.ones_like(norm))  # zero rows stay zero

    def entries(self, model: nn.Module) -> list[HookEntry]:
        r = self._unit_directions(model)
        per_row = r.dim() == 2
        pos = parse_positions(self.positions)
        everywhere = self.positions == "all"  # then pads are ablated too; no mask needed
        sites = [check_site(s) for s in self.sites]
        trainable = r.requires_grad
        cache: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

        def directions_for(h: torch.Tensor) -> torch.Tensor:  # [B, 1, d] per row, else [d]
            key = (h.device, h.dtype)
            if not trainable and key in cache:
                return cache[key]
            rr = r.to(device=h.device, dtype=h.dtype)
            rr = rr.unsqueeze(1) if per_row else rr
            if not trainable:
                cache[key] = rr
            return rr

        def fn(h: torch.Tensor, info: PositionInfo) -> torch.Tensor:
            rr = directions_for(h)
            if per_row and rr.shape[0] != h.shape[0]:
                raise InputError(f"Ablate: per-row directions for {rr.shape[0]} rows but the batch has {h.shape[0]}")
            proj = (h * rr).sum(-1, keepdim=True) if per_row else (h @ rr).unsqueeze(-1)  # [B, T, 1]
            if not everywhere:
                proj = proj * pos.mask(info).unsqueeze(-1).to(h.dtype)
            return h - proj * rr

        return [HookEntry(layer, site, fn) for layer in resolve_layers(model, self.layers) for site in sites]
