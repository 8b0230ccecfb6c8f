"""What every intervention shares: attach to a model, detach always, usable as a context manager."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from steerlab.errors import InputError
from steerlab.interventions.hooks import HookEntry, hook_manager
from steerlab.models.layers import check_layer, num_layers


class Intervention:
    """Base class. Subclasses implement :meth:`entries`, the hook functions to install."""

    def entries(self, model: nn.Module) -> list[HookEntry]:  # pragma: no cover - abstract
        """The :class:`~steerlab.interventions.hooks.HookEntry` list this intervention installs on ``model``."""
        raise NotImplementedError

    def attach(self, model: nn.Module) -> list[int]:
        """Install this intervention's hooks; returns entry ids for :meth:`detach`."""
        mgr = hook_manager(model)
        ids: list[int] = []
        try:
            for entry in self.entries(model):
                ids.append(mgr.add_entry(entry))
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
    def on(self, model: nn.Module) -> Iterator[Intervention]:
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


def as_row_tensor(x: float | Sequence[float] | torch.Tensor, what: str = "value") -> torch.Tensor:
    """A scalar or per-row sequence as a float tensor (0-d or [B]); NaN or infinity is an InputError."""
    t = x.float() if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=torch.float32)
    if not torch.isfinite(t.detach()).all():
        raise InputError(f"{what} must be finite, got {x!r}")
    return t


def check_finite_output(out: torch.Tensor, before: torch.Tensor, where: str) -> torch.Tensor:
    """``out`` unchanged, or an InputError when an intervention broke the activations.

    Broken means the mean square over the hidden dimension — what every RMS/layer norm computes
    next, in float32 — is no longer finite (NaN, infinity, or values above ~1.8e19) while it was
    before. That is how a steering strength far too large shows up; without this check the next
    norm silently turns such a state into zeros (or NaN) and generation goes on producing text.
    """
    if torch.isfinite(out.detach().float().pow(2).mean(-1)).all():
        return out
    if torch.isfinite(before.detach().float().pow(2).mean(-1)).all():
        raise InputError(
            f"{where}: the steered activations overflowed (their mean square is not finite in float32); "
            "the strength is far too large for this vector"
        )
    return out
