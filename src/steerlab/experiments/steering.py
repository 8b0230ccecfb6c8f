"""Turn the InterventionSpecs of a batch of cells into per-row interventions for one forward pass.

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

import torch

from steerlab.errors import InputError
from steerlab.experiments.records import InterventionSpec
from steerlab.interventions import EVERY_RESIDUAL_WRITE, Ablate, Add, Intervention
from steerlab.vectors.vector import SteeringVector


def _lookup(vectors: Mapping[str, SteeringVector], name: str | None) -> SteeringVector:
    if name is None or name not in vectors:
        known = ", ".join(vectors) or "none"
        raise InputError(f"intervention names vector {name!r}, which is not in the run's vectors ({known})")
    return vectors[name]


def batch_interventions(
    specs: Sequence[InterventionSpec], vectors: Mapping[str, SteeringVector] | None = None
) -> list[Intervention]:
    """Per-row interventions equivalent to applying each row's spec to that row alone."""
    vectors = vectors or {}
    b = len(specs)
    groups: dict[tuple, list[int]] = {}
    for i, spec in enumerate(specs):
        if spec.is_noop:
            continue
        v = _lookup(vectors, spec.vector)
        if spec.kind == "add":
            layers = tuple(spec.layers) if isinstance(spec.layers, list) else spec.layers or (v.layer,)
            key = ("add", layers, spec.site or v.site, spec.positions)
        else:
            layers = tuple(spec.layers) if isinstance(spec.layers, list) else spec.layers or "all"
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
