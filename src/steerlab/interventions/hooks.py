"""One hook per hooked site, shared by every intervention on a model.

Interventions never call ``register_forward_hook`` themselves. They register *entries* with
the model's :class:`HookManager`, which installs a single PyTorch hook per (layer, site) and,
on each call, runs the modifying entries in the order they were added, then the capturing
ones (so a capture sees the final value). A second hook, on the decoder stack, records a
:class:`PositionInfo` for every forward call so entries know which tokens they see, under left
padding and with the KV cache.

Removing the last entry removes the PyTorch hooks: a model with no intervention runs the
original code path.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from steerlab.interventions.positions import PositionInfo
from steerlab.models.layers import Site, base_model, check_layer, first_tensor, replace_first, site_module

# fn(hidden [B, T, d], info) -> new hidden (modifier) or None (capture)
HookFn = Callable[[torch.Tensor, PositionInfo], "torch.Tensor | None"]


@dataclass(frozen=True)
class HookEntry:
    """One function an intervention runs at one (layer, site).

    Attributes:
        layer: decoder layer index (non-negative).
        site: ``resid_pre``, ``resid_post``, ``attn_out`` or ``mlp_out``.
        fn: ``fn(hidden [B, T, d], info) -> new hidden`` for a modifier, ``-> None`` for a capture.
        capture: True for a read-only entry (runs after every modifier at that site).
    """

    layer: int
    site: Site
    fn: HookFn
    capture: bool = False


_ATTR = "_steerlab_hook_manager"
_ids = itertools.count()


class StopForward(Exception):
    """Raised by a capture to end a forward pass early (after the deepest layer needed)."""


@dataclass
class _Slot:
    handle: torch.utils.hooks.RemovableHandle
    modifiers: dict[int, HookFn] = field(default_factory=dict)
    captures: dict[int, HookFn] = field(default_factory=dict)


class HookManager:
    """Owns every steerlab hook on one model. Get it with :func:`hook_manager`."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.slots: dict[tuple[int, Site], _Slot] = {}
        self.info: PositionInfo | None = None
        self.fixed_prompt_len: torch.Tensor | None = None  # set through prompt_lengths(); else inferred
        self._prompt_len: torch.Tensor | None = None
        self._tracker: torch.utils.hooks.RemovableHandle | None = None

    # ---- position tracking -------------------------------------------------------------
    def _track(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        emb = kwargs.get("inputs_embeds")
        ref = ids if ids is not None else emb
        if ref is None:
            return
        b, t = ref.shape[0], ref.shape[1]
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.dim() == 2 and mask.shape[0] == b:
            past = mask.shape[1] - t
            idx = mask.long().cumsum(-1) - 1
            token_index = torch.where(mask.bool(), idx, torch.full_like(idx, -1))[:, past:]
            n_real_prompt = mask.long().sum(-1)
        else:
            pkv = kwargs.get("cache")  # transformers' new name of the argument, then the old one
            if pkv is None:
                pkv = kwargs.get("past_key_values")
            past = int(pkv.get_seq_length()) if pkv is not None and hasattr(pkv, "get_seq_length") else 0
            token_index = torch.arange(past, past + t, device=ref.device).expand(b, t)
            n_real_prompt = torch.full((b,), past + t, device=ref.device, dtype=torch.long)
        if self.fixed_prompt_len is not None:
            prompt_len = self.fixed_prompt_len.to(ref.device)
        elif past == 0 or self._prompt_len is None or self._prompt_len.shape[0] != b:
            prompt_len = n_real_prompt
        else:
            prompt_len = self._prompt_len
        self._prompt_len = prompt_len
        self.info = PositionInfo(token_index=token_index, prompt_len=prompt_len)

    @contextmanager
    def prompt_lengths(self, prompt_len: torch.Tensor | None) -> Iterator[HookManager]:
        """Tell position specs how many prompt tokens each row has, for the ``with`` block.

        Without it, the prompt length is inferred from the first forward call (its real
        tokens); pass it when a forward call holds prompt *and* completion tokens (scoring a
        continuation, extraction with completions), so ``prompt``/``generated``/``last``
        select the right tokens.

        Example:
            >>> with hook_manager(model).prompt_lengths(batch.prompt_len):
            ...     model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        """
        previous = self.fixed_prompt_len
        self.fixed_prompt_len = prompt_len
        try:
            yield self
        finally:
            self.fixed_prompt_len = previous

    # ---- entries -----------------------------------------------------------------------
    def add_entry(self, entry: HookEntry) -> int:
        """Register a :class:`HookEntry`; returns an id for :meth:`remove`."""
        return self.add(entry.layer, entry.site, entry.fn, capture=entry.capture)

    def add(self, layer: int, site: Site, fn: HookFn, *, capture: bool = False) -> int:
        """Register ``fn`` at (layer, site); returns an id for :meth:`remove`."""
        layer = check_layer(self.model, layer)
        key = (layer, site)
        if key not in self.slots:
            self.slots[key] = _Slot(handle=self._install(layer, site))
        if self._tracker is None:
            self._tracker = base_model(self.model).register_forward_pre_hook(self._track, with_kwargs=True)
        entry = next(_ids)
        (self.slots[key].captures if capture else self.slots[key].modifiers)[entry] = fn
        return entry

    def remove(self, entry: int) -> None:
        for key, slot in list(self.slots.items()):
            slot.modifiers.pop(entry, None)
            slot.captures.pop(entry, None)
            if not slot.modifiers and not slot.captures:
                slot.handle.remove()
                del self.slots[key]
        if not self.slots and self._tracker is not None:
            self._tracker.remove()
            self._tracker = None
            self.info = None
            self._prompt_len = None

    def _run(self, key: tuple[int, Site], h: torch.Tensor) -> torch.Tensor:
        slot = self.slots[key]
        info = self.info
        if info is None or info.token_index.shape != h.shape[:2]:
            raise RuntimeError(
                "steerlab: hidden states do not match the tracked token positions; interventions "
                "need the model to be called through its decoder stack with input_ids or inputs_embeds"
            )
        for fn in list(slot.modifiers.values()):
            out = fn(h, info)
            if out is not None:
                h = out
        for fn in list(slot.captures.values()):
            fn(h, info)
        return h

    def _install(self, layer: int, site: Site) -> torch.utils.hooks.RemovableHandle:
        module, kind = site_module(self.model, layer, site)
        key = (layer, site)
        if kind == "pre":

            def pre_hook(
                mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
            ) -> tuple[tuple[Any, ...], dict[str, Any]]:
                if args:
                    return (self._run(key, args[0]), *args[1:]), kwargs
                kwargs = dict(kwargs)
                kwargs["hidden_states"] = self._run(key, kwargs["hidden_states"])
                return args, kwargs

            return module.register_forward_pre_hook(pre_hook, with_kwargs=True)

        def post_hook(mod: nn.Module, args: tuple[Any, ...], output: object) -> object:
            return replace_first(output, self._run(key, first_tensor(output)))

        return module.register_forward_hook(post_hook)


def hook_manager(model: nn.Module) -> HookManager:
    """The model's :class:`HookManager`, created on first use."""
    mgr = model.__dict__.get(_ATTR)
    if mgr is None:
        mgr = HookManager(model)
        model.__dict__[_ATTR] = mgr
    return mgr
