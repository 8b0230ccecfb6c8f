"""What every intervention shares: attach to a model, detach always, usable as a context manager."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from steerlab.interventions.hooks import hook_manager
from steerlab.models.layers import check_layer, num_layers


class Intervention:
    """Base class. Subclasses implement :meth:`_entries` returning (layer, site, fn, capture)."""

    def _entries(self, model: nn.Module) -> list[tuple]:  # pragma: no cover - abstract
        raise NotImplementedError

    def attach(self, model: nn.Module) -> list[int]:
        """Install this intervention's hooks; returns entry ids for :meth:`detach`."""
        mgr = hook_manager(model)
        ids: list[int] = []
        try:
            for layer, site, fn, capture in self._entries(model):
                ids.append(mgr.add(layer, site, fn, capture=capture))
        except BaseException:
            for i in ids:
                mgr.remove(i)
            raise
        return ids

    @staticmethod
    def detach(model: nn.Module, ids: Sequence[int]) -> None:
        mgr = hook_manager(model)
        for i in ids:
            mgr.remove(i)

    @contextmanager
    def on(self, model: nn.Module) -> Iterator["Intervention"]:
        """``with Add(...).on(model): ...`` — hooks are removed on exit, even after an error."""
        with intervene(model, self):
            yield self


@contextmanager
def intervene(model: nn.Module, *interventions: Intervention) -> Iterator[None]:
    """Apply several interventions for the duration of a ``with`` block, in the given order.

    Example:
        >>> with intervene(lm.model, Add(vec, strength=4.0), Capture(layers=[3])):
        ...     lm.model(**batch)
    """
    model = getattr(model, "model", model) if not isinstance(model, nn.Module) else model
    attached: list[list[int]] = []
    try:
        for iv in interventions:
            attached.append(iv.attach(model))
        yield
    finally:
        for ids in reversed(attached):
            Intervention.detach(model, ids)


def resolve_layers(model: nn.Module, layers: int | Sequence[int] | str | None, default: int | None = None) -> list[int]:
    """``"all"`` → every layer; an int or list → those (negatives count from the end)."""
    n = num_layers(model)
    if layers is None:
        if default is None:
            raise ValueError("no layer given")
        layers = default
    if layers == "all":
        return list(range(n))
    if isinstance(layers, int):
        layers = [layers]
    return [check_layer(model, int(layer)) for layer in layers]


def as_row_tensor(x: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
    """A scalar or per-row sequence as a float tensor (0-d or [B])."""
    return torch.as_tensor(x, dtype=torch.float32)
