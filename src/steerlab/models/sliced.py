"""Run a slice of the decoder stack (layers ``start..stop``) from cached inputs.

Vectors injected at a source layer leave every earlier layer unchanged, so methods that run
many steered passes over the same prompts (MELBO's training steps, power iteration, an A/B
grid of vector × scale conditions) compute the layers before the source once and then run
only the layers they need, many rows at a time (batched MELBO's ``SlicedModel`` design).

How it stays generic: one ordinary forward pass (stopped after layer ``stop``) records, for
each layer of the slice, everything the model's decoder stack passed it — positional
arguments and keyword arguments such as attention masks, rotary position embeddings and
position ids, which differ per layer in Gemma 2/3 (sliding-window and global attention).
:meth:`LayerSlice.run` then calls the layers directly with those arguments. Absolute learned
position embeddings (GPT-2) are added before layer 0 and so are already inside the cached
input. A row of a run is a copy of one cached prompt (``rows`` picks which); tensor arguments
whose first dimension is the number of prompts (and which have at least 2 dimensions) are
indexed the same way, all others (batch-1 masks, shared position tables) broadcast as they
are. Interventions are applied through their :class:`~steerlab.interventions.HookEntry`
functions with positions computed from the cached attention mask, exactly as the hook
manager would.

Example:
    >>> sl = LayerSlice(lm, lm.tokenize(texts), start=4, stop=10)
    >>> base = sl.unsteered                                # [P, T, d] resid_post of layer 10
    >>> out = sl.run([Add(vecs, layers=4, site="mlp_out")], rows=torch.arange(P).repeat(K))
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from steerlab.errors import ArchitectureError, InputError
from steerlab.interventions.hooks import HookEntry, StopForward, hook_manager
from steerlab.interventions.positions import PositionInfo
from steerlab.models.layers import base_model, check_layer, decoder_layers, first_tensor, replace_first, site_module

if TYPE_CHECKING:
    from steerlab.interventions.base import Intervention
    from steerlab.models.hf import Batch, LanguageModel

#: Attribute names of the final norm on the decoder stack (Llama/Gemma/Mistral, GPT-2, GPT-NeoX, others).
FINAL_NORM_NAMES: tuple[str, ...] = ("norm", "ln_f", "final_layer_norm", "final_norm")


def final_norm(model: nn.Module) -> nn.Module:
    """The norm applied after the last decoder layer (before the LM head)."""
    stack = base_model(model)
    for name in FINAL_NORM_NAMES:
        mod = getattr(stack, name, None)
        if isinstance(mod, nn.Module):
            return mod
    raise ArchitectureError(
        f"cannot find the final norm of {type(model).__name__}: tried "
        f"{', '.join(FINAL_NORM_NAMES)} on {type(stack).__name__}"
    )


#: Sites whose additions are additions to the residual stream leaving the layer.
RESIDUAL_WRITE_SITES: tuple[str, ...] = ("mlp_out", "resid_post")


def later_equivalent(iv: Intervention | HookEntry, model: nn.Module) -> Intervention | HookEntry:
    """``iv``, or — for an :class:`~steerlab.interventions.Add` at one layer L < last at ``mlp_out``
    or ``resid_post`` — the same Add at (L + 1, ``resid_pre``).

    Adding δ to a layer's MLP write adds δ to the residual stream that leaves the layer (``mlp_out``
    is the last write into it, ``resid_post`` is that stream), which is exactly the input of layer
    L + 1. A slice that starts at L + 1 then skips recomputing layer L for every steered row.
    """
    from dataclasses import replace

    from steerlab.interventions.add import Add
    from steerlab.interventions.base import resolve_layers
    from steerlab.models.layers import num_layers

    if not isinstance(iv, Add):
        return iv
    site = iv.site or getattr(iv.vector, "site", None) or "resid_post"
    layers = resolve_layers(model, iv.layers, getattr(iv.vector, "layer", None))
    if site not in RESIDUAL_WRITE_SITES or len(layers) != 1 or layers[0] + 1 >= num_layers(model):
        return iv
    return replace(iv, layers=layers[0] + 1, site="resid_pre")


def _select(x: Any, rows: torch.Tensor, n_prompts: int) -> Any:
    """``x`` with every per-prompt tensor indexed by ``rows`` (recursively through containers)."""
    if isinstance(x, torch.Tensor):
        return x[rows] if n_prompts > 1 and x.dim() >= 2 and x.shape[0] == n_prompts else x
    if isinstance(x, tuple):
        return tuple(_select(v, rows, n_prompts) for v in x)
    if isinstance(x, list):
        return [_select(v, rows, n_prompts) for v in x]
    if isinstance(x, dict):
        return {k: _select(v, rows, n_prompts) for k, v in x.items()}
    return x


class LayerSlice:
    """Layers ``start..stop`` of ``lm``'s decoder stack over a fixed batch of prompts.

    Args:
        lm: the model.
        batch: the prompts (left-padded, from :meth:`LanguageModel.tokenize`).
        start: first layer run by :meth:`run` (interventions must be at this layer or later).
        stop: last layer run (default: the last layer).
        final_norm: apply the model's final norm after ``stop`` (needs ``stop`` = last layer),
            so :meth:`run` returns the hidden states the LM head reads.

    Attributes:
        inputs: ``[P, T, d]`` the hidden states entering layer ``start`` (no grad).
        unsteered: ``[P, T, d]`` the slice's output without intervention (from the full pass).
    """

    def __init__(
        self, lm: LanguageModel, batch: Batch, start: int, stop: int | None = None, *, final_norm: bool = False
    ) -> None:
        self.lm = lm
        self.model = lm.model
        self.batch = batch
        n = lm.n_layers
        self.start = check_layer(self.model, start)
        self.stop = check_layer(self.model, n - 1 if stop is None else stop)
        if self.stop < self.start:
            raise InputError(f"LayerSlice: stop layer {self.stop} comes before start layer {self.start}")
        if final_norm and self.stop != n - 1:
            raise InputError("LayerSlice: final_norm=True needs the slice to end at the last layer")
        self.final_norm = final_norm
        self._check_no_attached_hooks()
        self.inputs, self.unsteered, self._calls = self._capture()

    @property
    def n_prompts(self) -> int:
        return int(self.batch.input_ids.shape[0])

    def _check_no_attached_hooks(self) -> None:
        mgr = hook_manager(self.model)
        busy = sorted({layer for layer, _ in mgr.slots if layer >= self.start})
        if busy:
            raise InputError(f"LayerSlice: interventions are attached to layers {busy}; pass them to run() instead")

    def _capture(self) -> tuple[torch.Tensor, torch.Tensor, list[tuple[tuple, dict]]]:
        """One forward pass: the input of ``start``, every slice layer's arguments, the output of ``stop``."""
        layers = decoder_layers(self.model)
        calls: dict[int, tuple[tuple, dict]] = {}
        out: list[torch.Tensor] = []

        def pre(i: int):
            def hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
                calls[i] = (args, dict(kwargs))

            return hook

        def post(mod: nn.Module, args: tuple, output: object) -> None:
            out.append(first_tensor(output))
            if not self.final_norm:
                raise StopForward

        handles = [
            layers[i].register_forward_pre_hook(pre(i), with_kwargs=True) for i in range(self.start, self.stop + 1)
        ]
        handles.append(layers[self.stop].register_forward_hook(post))
        try:
            with torch.no_grad():  # not inference_mode: the cached tensors may enter autograd later
                try:
                    res = base_model(self.model)(
                        input_ids=self.batch.input_ids,
                        attention_mask=self.batch.attention_mask,
                        position_ids=self.batch.position_ids,
                        use_cache=False,
                    )
                except StopForward:
                    res = None
        finally:
            for h in handles:
                h.remove()
        if self.final_norm:
            out[-1] = res[0] if isinstance(res, tuple) else res.last_hidden_state
        first_args, first_kwargs = calls[self.start]
        hidden = first_args[0] if first_args else first_kwargs["hidden_states"]
        return hidden.detach(), out[-1].detach(), [calls[i] for i in range(self.start, self.stop + 1)]

    def positions(self, rows: torch.Tensor) -> PositionInfo:
        """Token bookkeeping for a run whose row ``r`` is prompt ``rows[r]`` (as the hook manager computes it)."""
        mask = self.batch.attention_mask[rows]
        idx = mask.long().cumsum(-1) - 1
        token_index = torch.where(mask.bool(), idx, torch.full_like(idx, -1))
        return PositionInfo(token_index=token_index, prompt_len=self.batch.prompt_len[rows].long())

    def run(
        self,
        interventions: Sequence[Intervention | HookEntry] = (),
        rows: torch.Tensor | None = None,
        *,
        grad: bool = False,
    ) -> torch.Tensor:
        """The slice's output ``[R, T, d]`` with ``interventions`` applied; row ``r`` is prompt ``rows[r]``.

        Args:
            interventions: :class:`~steerlab.interventions.Intervention` objects (per-row values
                sized for ``R`` rows) or raw :class:`~steerlab.interventions.HookEntry` functions.
            rows: ``[R]`` prompt index of each row (default: each prompt once).
            grad: record autograd (to differentiate through a trainable vector).
        """
        rows = torch.arange(self.n_prompts, device=self.inputs.device) if rows is None else rows.to(self.inputs.device)
        entries: list[HookEntry] = []
        for iv in interventions:
            entries += [iv] if isinstance(iv, HookEntry) else iv.entries(self.model)
        for e in entries:
            if not self.start <= e.layer <= self.stop:
                raise InputError(
                    f"LayerSlice runs layers {self.start}..{self.stop}; an intervention at layer "
                    f"{e.layer} is outside it"
                )
        info = self.positions(rows)
        layers = decoder_layers(self.model)
        mode = torch.enable_grad() if grad else torch.inference_mode()
        with mode, self._hooks(entries, info):
            h = self.inputs[rows]
            for i, (args, kwargs) in zip(range(self.start, self.stop + 1), self._calls):
                rest = _select(args[1:] if args else (), rows, self.n_prompts)
                kw = _select({k: v for k, v in kwargs.items() if k != "hidden_states"}, rows, self.n_prompts)
                h = first_tensor(layers[i](h, *rest, **kw))
            if self.final_norm:
                h = final_norm(self.model)(h)
        return h

    @contextlib.contextmanager
    def _hooks(self, entries: Sequence[HookEntry], info: PositionInfo) -> Iterator[None]:
        """Install ``entries`` at their sites for the block (modifiers first, then captures, as the hook manager does)."""
        groups: dict[tuple[int, str], list[HookEntry]] = {}
        for e in entries:
            groups.setdefault((e.layer, e.site), []).append(e)
        handles = []

        def apply(es: list[HookEntry], h: torch.Tensor) -> torch.Tensor:
            for e in [e for e in es if not e.capture]:
                new = e.fn(h, info)
                h = h if new is None else new
            for e in [e for e in es if e.capture]:
                e.fn(h, info)
            return h

        try:
            for (layer, site), es in groups.items():
                mod, kind = site_module(self.model, layer, site)  # type: ignore[arg-type]
                if kind == "pre":
                    handles.append(
                        mod.register_forward_pre_hook(lambda m, args, es=es: (apply(es, args[0]), *args[1:]))
                    )
                else:
                    handles.append(
                        mod.register_forward_hook(
                            lambda m, args, out, es=es: replace_first(out, apply(es, first_tensor(out)))
                        )
                    )
            yield
        finally:
            for h in handles:
                h.remove()
