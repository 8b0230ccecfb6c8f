"""Per-row interventions as data: :class:`InterventionSpec`, and one batch of them turned into
the Add/Ablate objects of one forward pass (:func:`batch_interventions`).

Rows with the same kind of intervention at the same layers, site and positions share one
:class:`~steerlab.interventions.Add` (per-row vectors and strengths; 0 for the other rows) or
one :class:`~steerlab.interventions.Ablate` (per-row directions; a zero direction for the other
rows). A row whose spec is a no-op gets exactly the unsteered computation: adding ``0 · v`` and
projecting out a zero direction leave its activations bit-identical.

Example:
    >>> ivs = batch_interventions([c.intervention for c in cells], vectors)
    >>> lm.complete(prompts, interventions=ivs, batch_size=len(cells))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from steerlab.errors import InputError
from steerlab.names import Site

if TYPE_CHECKING:
    from steerlab.interventions.base import Intervention
    from steerlab.vectors.vector import SteeringVector


class InterventionSpec(BaseModel):
    """What a cell does to the residual stream.

    ``kind="add"`` adds ``strength · vector`` at ``layers`` and ``site`` (defaults: the vector's
    own layer and site); ``kind="ablate"`` projects the vector's direction out at ``layers``
    (default all) and ``site`` (default every residual write). ``vector`` names a vector in the
    table handed to :meth:`~steerlab.experiments.engine.Run.cells`, never a file path.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["none", "add", "ablate"] = Field("none", description="none, add or ablate")
    vector: str | None = Field(None, description="name of the vector in the run's vector table")
    layers: list[int] | Literal["all"] | None = Field(None, description="layers; None = the default for the kind")
    site: Site | None = Field(None, description="hook site; None = the default for the kind")
    positions: str = Field("all", description="tokens touched: all, prompt, generated, last, last:K")
    strength: float = Field(0.0, description="add: the multiplier of the vector")

    @model_validator(mode="after")
    def _consistent(self) -> InterventionSpec:
        if self.kind == "none" and self.vector is not None:
            raise ValueError("an intervention of kind 'none' takes no vector")
        if self.kind != "none" and not self.vector:
            raise ValueError(f"an intervention of kind {self.kind!r} needs a vector name")
        if self.kind == "ablate" and self.strength != 0.0:
            raise ValueError("ablate takes no strength")
        return self

    @property
    def is_noop(self) -> bool:
        """True when this spec leaves the model unchanged (none, or add at strength 0)."""
        return self.kind == "none" or (self.kind == "add" and self.strength == 0.0)


NO_INTERVENTION = InterventionSpec()


def _lookup(vectors: Mapping[str, SteeringVector], name: str | None) -> SteeringVector:
    if name is None or name not in vectors:
        known = ", ".join(vectors) or "none"
        raise InputError(f"intervention names vector {name!r}, which is not in the run's vectors ({known})")
    return vectors[name]


def batch_interventions(
    specs: Sequence[InterventionSpec], vectors: Mapping[str, SteeringVector] | None = None
) -> list[Intervention]:
    """Per-row interventions equivalent to applying each row's spec to that row alone."""
    import torch

    from steerlab.interventions import EVERY_RESIDUAL_WRITE, Ablate, Add

    vectors = vectors or {}
    b = len(specs)
    groups: dict[tuple[Any, ...], list[int]] = {}  # (kind, layers, site(s), positions) → rows
    for i, spec in enumerate(specs):
        if spec.is_noop:
            continue
        v = _lookup(vectors, spec.vector)
        if spec.kind == "add":
            layers = tuple(spec.layers) if isinstance(spec.layers, list) else spec.layers or (v.layer,)
            key: tuple[Any, ...] = ("add", layers, spec.site or v.site, spec.positions)
        else:
            layers = tuple(spec.layers) if isinstance(spec.layers, list) else (spec.layers or "all")
            key = ("ablate", layers, (spec.site,) if spec.site else EVERY_RESIDUAL_WRITE, spec.positions)
        groups.setdefault(key, []).append(i)
    out: list[Intervention] = []
    for (kind, layers, site, positions), rows in groups.items():
        layer_arg = list(layers) if isinstance(layers, tuple) else layers
        first = _lookup(vectors, specs[rows[0]].vector).vector
        matrix = torch.zeros(b, first.shape[0], dtype=torch.float32)
        for i in rows:
            matrix[i] = _lookup(vectors, specs[i].vector).vector.float()
        if kind == "add":
            strength = torch.zeros(b, dtype=torch.float32)
            for i in rows:
                strength[i] = specs[i].strength
            out.append(Add(matrix, strength=strength, layers=layer_arg, site=site, positions=positions))
        else:
            out.append(Ablate(matrix, layers=layer_arg, sites=site, positions=positions))
    return out
