"""Which token positions an intervention touches.

Every forward call is described by a :class:`PositionInfo`: for each row and each token of
the current chunk, its index among the row's *real* tokens (left padding excluded, -1 for a
pad) and the row's prompt length. A position spec turns that into a boolean mask ``[B, T]``.
Because indices count real tokens, the same spec selects the same tokens with or without
left padding, and with or without the KV cache (where each generation step is a chunk of 1).

Specs:
    "all"          every real token (prompt and generated)
    "prompt"       prompt tokens only
    "generated"    generated tokens only
    "last"         the last prompt token;  "last:K" or LastK(K): the last K prompt tokens
    Span(a, b)     prompt tokens a..b-1 (negative values count from the prompt end, like slicing)
    Indices([..])  explicit prompt-token indices (negatives count from the prompt end)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from steerlab.errors import InputError


@dataclass
class PositionInfo:
    """Token bookkeeping for one forward call (one chunk of T tokens for B rows)."""

    token_index: torch.Tensor  # [B, T] long: index among the row's real tokens; -1 = padding
    prompt_len: torch.Tensor  # [B] long: number of real prompt tokens per row

    @property
    def real(self) -> torch.Tensor:  # [B, T] bool
        return self.token_index >= 0


@dataclass(frozen=True)
class LastK:
    """The last ``k`` prompt tokens of each row."""

    k: int

    def mask(self, info: PositionInfo) -> torch.Tensor:
        p = info.prompt_len[:, None]
        return (info.token_index >= p - self.k) & (info.token_index < p) & info.real


@dataclass(frozen=True)
class Span:
    """Prompt tokens ``start..stop-1``; negative bounds count back from the prompt end.

    ``start``/``stop`` may be per-row sequences (one bound per row of the batch).
    """

    start: int | Sequence[int] | None = None
    stop: int | Sequence[int] | None = None

    def _bound(self, b: int | Sequence[int] | None, info: PositionInfo, default: torch.Tensor) -> torch.Tensor:
        if b is None:
            return default
        t = torch.as_tensor(b, device=info.prompt_len.device).long()
        t = t.expand_as(info.prompt_len) if t.dim() == 0 else t
        return torch.where(t < 0, info.prompt_len + t, t)

    def mask(self, info: PositionInfo) -> torch.Tensor:
        lo = self._bound(self.start, info, torch.zeros_like(info.prompt_len))[:, None]
        hi = self._bound(self.stop, info, info.prompt_len)[:, None]
        hi = torch.minimum(hi, info.prompt_len[:, None])
        return (info.token_index >= lo) & (info.token_index < hi) & info.real


@dataclass(frozen=True)
class Indices:
    """Explicit prompt-token indices; negatives count back from the prompt end."""

    indices: tuple[int, ...]

    def mask(self, info: PositionInfo) -> torch.Tensor:
        m = torch.zeros_like(info.token_index, dtype=torch.bool)
        p = info.prompt_len[:, None]
        for i in self.indices:
            target = p + i if i < 0 else torch.full_like(p, i)
            m |= (info.token_index == target) & (info.token_index < p)
        return m & info.real


@dataclass(frozen=True)
class _Named:
    name: str

    def mask(self, info: PositionInfo) -> torch.Tensor:
        if self.name == "all":
            return info.real
        if self.name == "prompt":
            return info.real & (info.token_index < info.prompt_len[:, None])
        return info.token_index >= info.prompt_len[:, None]  # generated


PositionSpec = str | LastK | Span | Indices | _Named
Positions = LastK | Span | Indices | _Named


def parse_positions(spec: PositionSpec | Sequence[int]) -> Positions:
    """Turn a user-facing spec ("all", "prompt", "generated", "last", "last:3", a list) into a mask maker."""
    if isinstance(spec, (LastK, Span, Indices, _Named)):
        return spec
    if isinstance(spec, str):
        if spec in ("all", "prompt", "generated"):
            return _Named(spec)
        if spec == "last":
            return LastK(1)
        if spec.startswith("last:"):
            try:
                k = int(spec.split(":", 1)[1])
            except ValueError:
                k = 0
            if k < 1:
                raise InputError(f"positions {spec!r}: 'last:K' needs a positive integer K")
            return LastK(k)
        raise InputError(
            f"unknown positions {spec!r}; use all, prompt, generated, last, last:K, a list of indices, or Span(a, b)"
        )
    if isinstance(spec, Sequence) and all(isinstance(i, int) for i in spec):
        return Indices(tuple(i for i in spec if isinstance(i, int)))  # all are ints (checked above)
    raise InputError(f"cannot interpret positions {spec!r}")
