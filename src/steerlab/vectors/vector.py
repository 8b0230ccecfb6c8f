"""The steering-vector value type and its provenance metadata."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

FORMAT_VERSION = "steerlab-vector/1"


def data_hash(obj: Any) -> str:
    """sha256 (first 16 hex) of a JSON-serialisable description of the training data."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class VectorMeta:
    """Where a vector came from. Saved with it; checked when it is loaded into a model."""

    model_id: str  # e.g. "Qwen/Qwen3-8B" or a local path
    config_hash: str  # hash of the architecture-defining config fields (see models.hf.config_hash)
    hidden_size: int
    num_layers: int
    layer: int
    site: str  # resid_pre | resid_post | attn_out | mlp_out
    method: str  # mean_diff | pca | random | melbo | ...
    positions: str  # token selector used at extraction, e.g. "last"
    normalization: str  # none | unit | activation_norm
    activation_norm: float  # mean activation norm at (layer, site) on the extraction data
    raw_norm: float  # norm before normalisation
    n_examples: int
    data_hash: str
    steerlab_version: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "VectorMeta":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class SteeringVector:
    """One direction in one model's residual stream.

    ``vector`` is ``[hidden_size]`` float32 on CPU. Pass it straight to
    :class:`~steerlab.interventions.Add` or :class:`~steerlab.interventions.Ablate`: its layer and
    site become their defaults.
    """

    vector: torch.Tensor
    meta: VectorMeta

    @property
    def layer(self) -> int:
        return self.meta.layer

    @property
    def site(self) -> str:
        return self.meta.site

    @property
    def norm(self) -> float:
        return float(self.vector.norm())

    def scaled(self, factor: float) -> "SteeringVector":
        return replace(self, vector=self.vector * factor)

    def __repr__(self) -> str:
        m = self.meta
        return (f"SteeringVector(layer={m.layer}, site={m.site}, method={m.method}, norm={self.norm:.4g}, "
                f"normalization={m.normalization}, model={m.model_id!r})")
