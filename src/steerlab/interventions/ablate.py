"""Directional ablation: remove a direction from the residual stream, h ← h − (h·r̂) r̂."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from steerlab.errors import InputError
from steerlab.interventions.base import Intervention, resolve_layers
from steerlab.interventions.positions import PositionInfo, PositionSpec, parse_positions
from steerlab.models.layers import Site, check_site, hidden_size

#: The residual stream's input at every layer plus every write into it: with all three
#: ablated at every layer, no component along the direction survives anywhere in the stream.
EVERY_RESIDUAL_WRITE: tuple[Site, ...] = ("resid_pre", "attn_out", "mlp_out")


@dataclass
class Ablate(Intervention):
    """Project a direction out of the residual stream (Arditi et al. 2024, directional ablation).

    Args:
        direction: ``[d]`` tensor or a SteeringVector; normalised to unit length internally.
        layers: ``"all"`` (default) or layer indices.
        sites: which sites; default every residual write (``resid_pre``, ``attn_out``, ``mlp_out``).
        positions: which tokens (default all).
    """

    direction: Any
    layers: int | Sequence[int] | str = "all"
    sites: Sequence[Site] = EVERY_RESIDUAL_WRITE
    positions: PositionSpec | Sequence[int] = "all"

    def _entries(self, model: nn.Module) -> list[tuple]:
        r = torch.as_tensor(getattr(self.direction, "vector", self.direction)).float()
        if r.dim() != 1 or r.shape[0] != hidden_size(model):
            raise InputError(f"Ablate: direction must be [{hidden_size(model)}], got {tuple(r.shape)}")
        norm = r.norm()
        if norm == 0:
            raise InputError("Ablate: direction has zero norm")
        r = r / norm
        pos = parse_positions(self.positions)
        everywhere = self.positions == "all"  # then pads are ablated too; no mask needed
        sites = [check_site(s) for s in self.sites]
        cache: dict = {}

        def fn(h: torch.Tensor, info: PositionInfo) -> torch.Tensor:
            key = (h.device, h.dtype)
            if key not in cache:
                cache[key] = r.to(device=h.device, dtype=h.dtype)
            rr = cache[key]
            proj = (h @ rr).unsqueeze(-1)  # [B, T, 1]
            if not everywhere:
                proj = proj * pos.mask(info).unsqueeze(-1).to(h.dtype)
            return h - proj * rr

        return [(layer, site, fn, False) for layer in resolve_layers(model, self.layers) for site in sites]
