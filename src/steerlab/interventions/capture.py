"""Record activations at chosen layers and sites while the model runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from steerlab.errors import InputError
from steerlab.interventions.base import Intervention, resolve_layers
from steerlab.interventions.hooks import HookEntry
from steerlab.interventions.positions import PositionInfo, PositionSpec, parse_positions
from steerlab.models.layers import Site, check_site


@dataclass
class Capture(Intervention):
    """Capture hidden states. Sees the values *after* every modifying intervention.

    Each forward call appends one record per (layer, site): the hidden states ``[B, T, d]``
    (on CPU, float32 unless ``keep_dtype``) and the positions mask ``[B, T]``. With the KV
    cache, one generation step is one call of T=1; :meth:`stacked` joins calls along T.

    Args:
        layers: layer index, list, or ``"all"``.
        sites: one site or a list (default ``resid_post``).
        positions: which tokens count as selected (stored as the mask; nothing is dropped).
    """

    layers: int | Sequence[int] | str = "all"
    sites: Site | Sequence[Site] = "resid_post"
    positions: PositionSpec | Sequence[int] = "all"
    keep_dtype: bool = False
    records: dict[tuple[int, str], list[tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=dict, init=False)

    def entries(self, model: nn.Module) -> list[HookEntry]:
        sites = [self.sites] if isinstance(self.sites, str) else list(self.sites)
        pos = parse_positions(self.positions)
        out = []
        for layer in resolve_layers(model, self.layers):
            for site in sites:
                key = (layer, check_site(site))
                self.records.setdefault(key, [])

                def fn(h: torch.Tensor, info: PositionInfo, key: tuple[int, str] = key) -> None:
                    x = h.detach()
                    x = x.to("cpu") if self.keep_dtype else x.to("cpu", torch.float32)
                    self.records[key].append((x, pos.mask(info).cpu()))

                out.append(HookEntry(layer, key[1], fn, capture=True))
        return out

    def stacked(self, layer: int, site: Site = "resid_post") -> tuple[torch.Tensor, torch.Tensor]:
        """All calls joined along the token axis: (hidden ``[B, T_total, d]``, mask ``[B, T_total]``)."""
        recs = self.records.get((layer, site))
        if not recs:
            raise InputError(f"Capture: nothing recorded at layer {layer}, site {site}")
        return torch.cat([r[0] for r in recs], dim=1), torch.cat([r[1] for r in recs], dim=1)

    def selected(self, layer: int, site: Site = "resid_post") -> list[torch.Tensor]:
        """Per row, the selected tokens' hidden states ``[n_selected, d]``."""
        h, m = self.stacked(layer, site)
        return [h[b][m[b]] for b in range(h.shape[0])]

    def clear(self) -> None:
        for v in self.records.values():
            v.clear()
