"""Conditional activation steering (CAST; Lee et al., ICLR 2025): steer a row only when its prompt
matches a condition.

A *condition direction* ``c`` (e.g. the mean difference of harmful and benign prompts' last-token
activations at a condition layer) scores each row's prompt once, at its last prompt token::

    score = cos(h, P h),   P = ĉ ĉᵀ   (the cosine between h and its projection on c; = |h·ĉ| / |h|)

and the row's inner interventions (e.g. an :class:`~steerlab.interventions.Add` of a refusal
vector) apply to that row only if ``score > threshold`` (or ``<`` with ``comparator="smaller"``).
The decision is made during the prompt's forward pass and kept for the whole generation (the
generated tokens never re-decide it), separately for every row of the batch.

Invariant: a gated row's activations are exactly those of the inner interventions alone, an
ungated row's exactly the unsteered ones (``torch.where`` picks one or the other; nothing is
scaled). The condition must be read at a layer *before* every layer the inner interventions
modify, so the score of the prompt pass is known before any steering happens and is itself the
unsteered model's.

Example:
    >>> cast = Conditional(Add(refusal_vec, strength=0.1, layers=12), direction=c, layer=6, threshold=0.3)
    >>> lm.complete(prompts, interventions=[cast], batch_size=len(prompts))
    >>> cast.gate  # tensor([True, False, ...]): which rows were steered
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from steerlab.errors import InputError
from steerlab.interventions.base import Intervention
from steerlab.interventions.hooks import HookEntry
from steerlab.interventions.positions import PositionInfo
from steerlab.models.layers import Site, check_layer, check_site

Comparator = Literal["greater", "smaller"]


def projected_cosine(h: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """``cos(h, P h)`` for each row of ``h`` ``[N, d]``, with P the projection on ``direction`` ``[d]``.

    Computed in float32 as ``|h·ĉ| / |h|`` (0 for a zero row). The score is sign-free: it measures
    how much of h lies along the condition axis, not on which side.
    """
    hf = h.float()
    c = direction.float().to(hf.device)
    c = c / c.norm().clamp_min(1e-12)
    out: torch.Tensor = (hf @ c).abs() / hf.norm(dim=-1).clamp_min(1e-12)
    return out


def gate_decision(scores: torch.Tensor, threshold: float, comparator: Comparator = "greater") -> torch.Tensor:
    """Which scores pass the condition (``[N]`` bool)."""
    return scores > threshold if comparator == "greater" else scores < threshold


@dataclass
class Conditional(Intervention):
    """Apply ``inner`` to the rows whose prompt passes the condition (see the module docstring).

    Args:
        inner: the interventions to gate (their per-row values are kept as they are).
        direction: the condition direction ``[d]``.
        layer: the condition layer; must be below every layer ``inner`` modifies.
        threshold: the score a row's prompt must exceed (or stay under, for ``"smaller"``).
        site: where the condition is read (default ``resid_post``).
        comparator: ``"greater"`` (steer when score > threshold) or ``"smaller"``.
        rows: per row, whether the condition applies to it; rows with False are never gated
            (``inner`` applies to them as it would alone). Default: every row.

    After a forward pass, :attr:`scores` ``[B]`` and :attr:`gate` ``[B]`` hold each row's score
    and whether ``inner`` applied to it.
    """

    inner: Intervention | Sequence[Intervention]
    direction: torch.Tensor
    layer: int
    threshold: float
    site: Site = "resid_post"
    comparator: Comparator = "greater"
    rows: Sequence[bool] | torch.Tensor | None = None
    scores: torch.Tensor | None = field(default=None, init=False)
    gate: torch.Tensor | None = field(default=None, init=False)

    def _inner(self) -> list[Intervention]:
        return [self.inner] if isinstance(self.inner, Intervention) else list(self.inner)

    def _subject(self, b: int, device: torch.device) -> torch.Tensor:
        if self.rows is None:
            return torch.ones(b, dtype=torch.bool, device=device)
        r = torch.as_tensor(self.rows, dtype=torch.bool, device=device)
        if r.shape != (b,):
            raise InputError(f"Conditional: 'rows' has {r.numel()} entries but the batch has {b} rows")
        return r

    def entries(self, model: nn.Module) -> list[HookEntry]:
        if self.comparator not in ("greater", "smaller"):
            raise InputError(f"Conditional: comparator must be 'greater' or 'smaller', got {self.comparator!r}")
        if self.direction.dim() != 1 or not torch.isfinite(self.direction).all() or self.direction.norm() == 0:
            raise InputError("Conditional: the condition direction must be a finite, nonzero [d] vector")
        layer, site = check_layer(model, self.layer), check_site(self.site)
        inner = [e for iv in self._inner() for e in iv.entries(model)]
        early = sorted({e.layer for e in inner if not e.capture and e.layer <= layer})
        if early:
            raise InputError(
                f"Conditional: the condition is read at layer {layer}, but the gated interventions modify "
                f"layer(s) {early}; read the condition at a layer below every steered layer"
            )
        return [HookEntry(layer, site, self._score, capture=True)] + [self._wrap(e) for e in inner]

    def _score(self, h: torch.Tensor, info: PositionInfo) -> None:
        b = h.shape[0]
        if self.scores is None or self.scores.shape[0] != b:
            self.scores = torch.full((b,), float("nan"))
            self.gate = None
        at_last = info.token_index == (info.prompt_len[:, None] - 1)  # [B, T]: the last prompt token
        hit = at_last.any(-1)
        if not hit.any():
            return  # a generation step: the decision made on the prompt stands
        idx = at_last.float().argmax(-1)  # [B]
        s = projected_cosine(h[torch.arange(b, device=h.device), idx], self.direction).cpu()
        self.scores = torch.where(hit.cpu(), s, self.scores)
        passed = gate_decision(self.scores, self.threshold, self.comparator)
        self.gate = passed | ~self._subject(b, torch.device("cpu"))

    def _wrap(self, entry: HookEntry) -> HookEntry:
        if entry.capture:
            return entry
        fn = entry.fn

        def gated(h: torch.Tensor, info: PositionInfo) -> torch.Tensor | None:
            if self.gate is None or self.gate.shape[0] != h.shape[0] or self.scores is None:
                raise RuntimeError("Conditional: a steered layer ran before the condition was scored")
            if torch.isnan(self.scores[self._subject(h.shape[0], self.scores.device)]).any():
                raise RuntimeError("Conditional: a row's prompt was not scored (its last prompt token was not seen)")
            out = fn(h, info)
            if out is None:
                return None
            return torch.where(self.gate.to(h.device)[:, None, None], out, h)

        wrapped: Callable[[torch.Tensor, PositionInfo], torch.Tensor | None] = gated
        return HookEntry(entry.layer, entry.site, wrapped)
