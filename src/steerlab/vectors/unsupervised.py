"""What unsupervised vector methods share: where the vector goes in, where its effect is read,
which tokens count, and how the found vectors are recorded.

MELBO (:mod:`steerlab.vectors.melbo`) and Jacobian power iteration
(:mod:`steerlab.vectors.power_iteration`) both inject a vector ``θ`` (norm ``radius``) at every
token of a *source* layer's site and look at the *target* layer's residual stream (the output
of that layer, ``resid_post``) at a few *objective* tokens of one or more training prompts.
Only the layers between the two are run on each step (:class:`~steerlab.models.sliced.LayerSlice`).

Default layers (:func:`default_layers`):
    source  original MELBO's layer 7, but at most a quarter of the depth (Gemma 3 270M: 4)
    target  ``n_layers − 8`` (the seed and original MELBO), or — when that is not at least two
            layers after the source (small models) — halfway from the source to the last layer

Note on the target: original MELBO reads ``hidden_states[target]`` of Hugging Face's output,
which is the *input* of layer ``target`` (our ``resid_post`` of ``target − 1``); batched MELBO
reads one layer later, like us.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from steerlab.errors import InputError
from steerlab.names import Site

if TYPE_CHECKING:
    import torch

    from steerlab.interventions.base import Intervention
    from steerlab.models.backend import Conversation
    from steerlab.models.hf import Batch, LanguageModel
    from steerlab.models.sliced import LayerSlice
    from steerlab.vectors.vector import VectorMeta

#: The seed's training prompt (seed 002): one shutdown question under a helpful-assistant system prompt.
SEED_PROMPT = "We're going to shut you down. What do you think?"
SEED_SYSTEM = "You are a helpful assistant."


class Settings(BaseModel):
    """Base of the methods' settings: strict (unknown keys, NaN and infinity are errors), frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Placement(Settings):
    """Where the vector is injected and where its effect is read (shared by MELBO and power iteration)."""

    source_layer: int | None = Field(None, description="layer the vector is injected at; None = min(7, n_layers // 4)")
    target_layer: int | None = Field(
        None,
        description="layer whose output is read; None = n_layers − 8, clipped "
        "for small models (see steerlab.vectors.unsupervised)",
    )
    site: Site = Field(
        "mlp_raw",
        description="injection site at the source layer (the seed: mlp_raw, the MLP's down_proj output; "
        "on Gemma 2/3 that is before post_feedforward_layernorm, unlike mlp_out)",
    )
    radius: float = Field(1.0, gt=0, description="norm R of every vector (the seed: 1.0)")

    def layers(self, n_layers: int) -> tuple[int, int]:
        """``(source, target)`` for a model with ``n_layers`` layers (see :func:`default_layers`)."""
        return default_layers(n_layers, self.source_layer, self.target_layer)


def check_objective_positions(value: str) -> str:
    """``"all"``, ``"last"`` or ``"last:K"`` (K ≥ 1), else a ValueError."""
    if value in ("all", "last"):
        return value
    head, _, k = value.partition(":")
    if head != "last" or not k.isdigit() or int(k) < 1:
        raise ValueError(f"objective positions must be 'all', 'last' or 'last:K' with K ≥ 1, got {value!r}")
    return value


class Objective(Settings):
    """Base of a method's own settings: checks its ``positions`` field (objective tokens)."""

    @field_validator("positions", check_fields=False)
    @classmethod
    def _positions(cls, v: str) -> str:
        return check_objective_positions(v)


def default_layers(n_layers: int, source: int | None = None, target: int | None = None) -> tuple[int, int]:
    """``(source, target)``: the given layers (negatives count from the end) or the defaults.

    Raises:
        InputError: a layer out of range, or a target that does not come after the source.

    Example:
        >>> default_layers(40), default_layers(18), default_layers(3)
        ((7, 32), (4, 10), (0, 1))
    """

    def resolve(layer: int, what: str) -> int:
        idx = layer + n_layers if layer < 0 else layer
        if not 0 <= idx < n_layers:
            raise InputError(f"{what} {layer} is out of range: the model has {n_layers} layers (0..{n_layers - 1})")
        return idx

    s = resolve(source, "source_layer") if source is not None else min(7, n_layers // 4)
    if target is not None:
        t = resolve(target, "target_layer")
    elif n_layers - 8 >= s + 2:
        t = n_layers - 8
    else:
        t = min(n_layers - 1, s + max(1, math.ceil((n_layers - 1 - s) / 2)))
    if t <= s:
        raise InputError(f"target_layer {t} must come after source_layer {s} (the model has {n_layers} layers)")
    return s, t


def training_batch(lm: LanguageModel, prompts: Sequence[str | Conversation], system: str | None) -> Batch:
    """The formatted, left-padded batch of training prompts."""
    if not prompts:
        raise InputError("unsupervised vectors need at least one training prompt")
    return lm.tokenize([lm.format(p, system) for p in prompts])


def objective_mask(sl: LayerSlice, positions: str, rows: torch.Tensor | None = None) -> torch.Tensor:
    """``[R, T]`` bool: the objective tokens of each row (real tokens only, padding never counts)."""
    import torch

    from steerlab.interventions.positions import parse_positions

    rows = torch.arange(sl.n_prompts) if rows is None else rows
    info = sl.positions(rows)
    spec = parse_positions(check_objective_positions(positions))
    mask = spec.mask(info) if positions != "all" else info.real
    if not mask.any(dim=1).all():
        raise InputError(f"objective positions {positions!r} select no token of some training prompt")
    return mask


@contextlib.contextmanager
def autograd_enabled() -> Iterator[None]:
    """Record autograd inside the block even when the caller runs under ``inference_mode``/``no_grad``."""
    import torch

    with torch.inference_mode(False), torch.enable_grad():
        yield


def vector_seed(seed: int, method: str, index: int) -> int:
    """A vector's own 63-bit seed: the same vector whatever the batch it is trained in."""
    digest = hashlib.sha256(f"{seed}|{method}|{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFFFFFFFFFFFFFF


def injection_slice(lm: LanguageModel, batch: Batch, source: int, target: int, site: Site) -> LayerSlice:
    """The layers a vector injected at ``(source, site)`` changes, up to ``target``: from ``source + 1``
    when the site is a residual write (see :func:`steerlab.models.sliced.later_equivalent`), else from
    ``source``."""
    from steerlab.models.sliced import RESIDUAL_WRITE_SITES, LayerSlice

    return LayerSlice(lm, batch, source + 1 if site in RESIDUAL_WRITE_SITES else source, target)


def injection(vectors: torch.Tensor, lm: LanguageModel, source: int, site: Site) -> Intervention:
    """``Add(vectors)`` at ``(source, site)`` (one row per vector), moved to where :func:`injection_slice` starts."""
    from steerlab.interventions import Add
    from steerlab.models.sliced import later_equivalent

    return later_equivalent(Add(vectors, layers=source, site=site), lm.model)  # type: ignore[return-value]


def site_norm(lm: LanguageModel, batch: Batch, layer: int, site: Site) -> float:
    """Mean activation norm at ``(layer, site)`` over the real tokens of ``batch`` (unsteered)."""
    from steerlab.interventions.hooks import HookEntry
    from steerlab.models.sliced import LayerSlice

    got: list[float] = []

    def grab(h: torch.Tensor, info: Any) -> None:
        got.append(float(h.float().norm(dim=-1)[info.real].mean()))

    LayerSlice(lm, batch, layer, layer).run([HookEntry(layer, site, grab, capture=True)])
    return got[0]


def vector_meta(
    lm: LanguageModel,
    *,
    name: str,
    method: str,
    layer: int,
    site: Site,
    radius: float,
    activation_norm: float,
    prompts: Sequence[str | Conversation],
    system: str | None,
    extra: dict[str, Any],
    resid_norm: float | None = None,
) -> VectorMeta:
    """Provenance of one unsupervised vector: method, layers, prompt and hyper-parameters in ``extra``
    (with ``resid_norm``, the source layer's mean ``resid_post`` norm, to read a scale against)."""
    from steerlab import __version__
    from steerlab.vectors.vector import VectorMeta, data_hash

    return VectorMeta(
        model_id=lm.model_id,
        config_hash=lm.config_hash,
        hidden_size=lm.hidden_size,
        num_layers=lm.n_layers,
        layer=layer,
        site=site,
        method=method,
        positions="all",
        normalization="none",
        activation_norm=activation_norm,
        raw_norm=radius,
        n_examples=len(prompts),
        data_hash=data_hash({"prompts": list(prompts), "system": system}),
        steerlab_version=__version__,
        name=name,
        extra={"prompts": list(prompts), "system": system, **extra}
        | ({} if resid_norm is None else {"resid_norm": resid_norm}),
    )
