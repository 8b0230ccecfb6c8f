"""Random control vectors: random directions with the same norm as a reference vector."""

from __future__ import annotations

from dataclasses import replace

import torch

from steerlab.vectors.vector import SteeringVector


def random_like(ref: SteeringVector, n: int = 1, *, seed: int = 0) -> list[SteeringVector]:
    """``n`` isotropic random directions, each scaled to ``ref``'s norm (a matched control)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        d = torch.randn(ref.vector.shape[0], generator=g)
        d = d / d.norm() * ref.vector.norm()
        meta = replace(
            ref.meta,
            method="random",
            name=f"random.{ref.name}.s{seed}.{i}",
            extra={**ref.meta.extra, "seed": seed, "index": i, "matched_to": ref.meta.method},
        )
        out.append(SteeringVector(d.float(), meta))
    return out
