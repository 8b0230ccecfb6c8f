"""Where the decoder layers and the residual-stream sites live, for any causal LM.

Five named sites per decoder layer:

    resid_pre   the residual stream entering layer L (the layer's input hidden states)
    resid_post  the residual stream leaving layer L (the block output)
    attn_out    what the attention sub-block adds to the residual stream
    mlp_out     what the MLP (or MoE) sub-block adds to the residual stream
    mlp_raw     the MLP module's own output (its ``down_proj``), before any post-norm or dropout

``attn_out``/``mlp_out`` are the actual residual *writes*: for Gemma 2/3 that is the output
of the post-attention / post-feed-forward norm, for GPT-NeoX and Phi-3 the residual dropout,
elsewhere the attention / MLP module itself. ``mlp_raw`` is where original MELBO and seed 002
inject (a hook on ``mlp.down_proj``): the same tensor as ``mlp_out`` on Llama-like models, but
on Gemma 2/3 a vector added there passes through ``post_feedforward_layernorm`` afterwards.

A new architecture is one :func:`register_architecture` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from steerlab.errors import ArchitectureError
from steerlab.names import SITES as SITES  # defined once in steerlab.names, re-exported here
from steerlab.names import Site as Site

RESIDUAL_WRITES: tuple[Site, ...] = ("attn_out", "mlp_out")


@dataclass(frozen=True)
class WeightRef:
    """A parameter that writes into the residual stream.

    ``path`` is a dotted parameter name relative to a decoder layer (attention and MLP writes)
    or to the CausalLM (embeddings); ``*`` matches one name component (an expert index).
    ``axis`` is the axis of length ``hidden_size`` along which the parameter's output lands
    in the residual stream: 0 for ``nn.Linear`` weights ``[d, in]`` and for biases ``[d]``,
    1 for embeddings ``[vocab, d]``, GPT-2's ``Conv1D`` weights ``[in, d]`` and fused expert
    weights ``[E, d, ff]``.
    """

    path: str
    axis: int


def _linear(path: str) -> tuple[WeightRef, ...]:
    """An ``nn.Linear`` write: its weight and (when it has one) its bias."""
    return (WeightRef(f"{path}.weight", 0), WeightRef(f"{path}.bias", 0))


#: MLP writes of the Llama-like families, dense and mixture-of-experts (absent paths are skipped).
_LLAMA_MLP_WRITES = (
    *_linear("mlp.down_proj"),
    WeightRef("mlp.experts.down_proj", 1),  # fused experts [E, d, ff] (Mixtral, Qwen-MoE in transformers 5)
    *_linear("mlp.experts.*.down_proj"),  # one module per expert
    *_linear("mlp.shared_expert.down_proj"),
    *_linear("block_sparse_moe.experts.*.w2"),  # older Mixtral layout
)


@dataclass(frozen=True)
class ArchSpec:
    """Dotted attribute paths, relative to the CausalLM, for one architecture family.

    Besides where to hook (``layers``, ``attn_out``, ``mlp_out``), it names the weights that
    write into the residual stream (``embed``, ``attn_write``, ``mlp_write``), which is what
    weight orthogonalisation edits (see :func:`residual_writers`). ``norm_after_write`` marks
    layouts (Gemma 2/3) whose attention and MLP outputs pass through a norm *after* those
    weights and before joining the residual stream, so an edit of the weights is not a plain
    projection of the write there.
    """

    base: str  # the decoder stack (holds the layers), e.g. "model"
    layers: str  # the ModuleList of decoder layers, relative to the CausalLM
    attn_out: str  # module inside a layer whose output is the attention residual write
    mlp_out: str  # module inside a layer whose output is the MLP residual write
    embed: tuple[WeightRef, ...] = (WeightRef("model.embed_tokens.weight", 1),)
    attn_write: tuple[WeightRef, ...] = _linear("self_attn.o_proj")
    mlp_write: tuple[WeightRef, ...] = _LLAMA_MLP_WRITES
    norm_after_write: bool = False
    mlp_raw: str | None = None  # module whose output is the MLP's raw output; None = ``mlp_out``

    @property
    def mlp_raw_path(self) -> str:
        """Module inside a layer whose output is the MLP's own output (site ``mlp_raw``)."""
        return self.mlp_raw or self.mlp_out


_LLAMA_LIKE = ArchSpec(base="model", layers="model.layers", attn_out="self_attn", mlp_out="mlp")
_GEMMA2_LIKE = ArchSpec(
    base="model",
    layers="model.layers",
    attn_out="post_attention_layernorm",
    mlp_out="post_feedforward_layernorm",
    norm_after_write=True,
    mlp_raw="mlp",
)

ARCHITECTURES: dict[str, ArchSpec] = {
    **{
        t: _LLAMA_LIKE
        for t in (
            "llama",
            "mistral",
            "qwen2",
            "qwen3",
            "gemma",
            "mixtral",
            "qwen2_moe",
            "qwen3_moe",
            "olmo",
            "olmo2",
            "olmoe",
            "granite",
            "cohere",
            "starcoder2",
            "smollm3",
            "deepseek_v3",
        )
    },
    "gemma2": _GEMMA2_LIKE,
    "gemma3": _GEMMA2_LIKE,
    "gemma3_text": _GEMMA2_LIKE,
    "phi3": ArchSpec("model", "model.layers", "resid_attn_dropout", "resid_mlp_dropout", mlp_raw="mlp"),
    "gpt2": ArchSpec(
        "transformer",
        "transformer.h",
        "attn",
        "mlp",
        embed=(WeightRef("transformer.wte.weight", 1), WeightRef("transformer.wpe.weight", 1)),
        attn_write=(WeightRef("attn.c_proj.weight", 1), WeightRef("attn.c_proj.bias", 0)),
        mlp_write=(WeightRef("mlp.c_proj.weight", 1), WeightRef("mlp.c_proj.bias", 0)),
    ),
    "gpt_neox": ArchSpec(
        "gpt_neox",
        "gpt_neox.layers",
        "post_attention_dropout",
        "post_mlp_dropout",
        embed=(WeightRef("gpt_neox.embed_in.weight", 1),),
        attn_write=_linear("attention.dense"),
        mlp_write=_linear("mlp.dense_4h_to_h"),
        mlp_raw="mlp",
    ),
}

_GUESS_LAYERS = (
    "model.layers",
    "transformer.h",
    "gpt_neox.layers",
    "model.decoder.layers",
    "language_model.model.layers",
    "model.language_model.layers",
)
_GUESS_ATTN = ("self_attn", "attn", "attention", "self_attention")
_GUESS_MLP = ("mlp", "feed_forward", "block_sparse_moe", "ffn")


def register_architecture(
    model_type: str,
    *,
    base: str,
    layers: str,
    attn_out: str,
    mlp_out: str,
    embed: tuple[WeightRef, ...] | None = None,
    attn_write: tuple[WeightRef, ...] | None = None,
    mlp_write: tuple[WeightRef, ...] | None = None,
    norm_after_write: bool = False,
    mlp_raw: str | None = None,
) -> None:
    """Teach steerlab where the layers and residual writes are for ``config.model_type``.

    The weight lists (``embed``, ``attn_write``, ``mlp_write``) default to the Llama layout;
    they matter only for weight orthogonalisation. ``mlp_raw`` (default: ``mlp_out``) is the
    module whose output is the MLP's own output, before a post-norm or dropout.

    Example:
        >>> register_architecture("mymodel", base="model", layers="model.layers",
        ...                       attn_out="self_attn", mlp_out="mlp")
    """
    d = ArchSpec(base=base, layers=layers, attn_out=attn_out, mlp_out=mlp_out)
    ARCHITECTURES[model_type] = ArchSpec(
        base=base,
        layers=layers,
        attn_out=attn_out,
        mlp_out=mlp_out,
        embed=embed or d.embed,
        attn_write=attn_write or d.attn_write,
        mlp_write=mlp_write or d.mlp_write,
        norm_after_write=norm_after_write,
        mlp_raw=mlp_raw,
    )


def _get(obj: nn.Module, path: str) -> nn.Module | None:
    for part in path.split("."):
        obj = getattr(obj, part, None)  # type: ignore[assignment]
        if obj is None:
            return None
    return obj


def arch_spec(model: nn.Module) -> ArchSpec:
    """The :class:`ArchSpec` for ``model``: registered by model_type, else found by structure."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in ARCHITECTURES:
        spec = ARCHITECTURES[model_type]
        if isinstance(_get(model, spec.layers), nn.ModuleList):
            return spec
    for lp in _GUESS_LAYERS:
        layers = _get(model, lp)
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            first = layers[0]
            attn = next((a for a in _GUESS_ATTN if _get(first, a) is not None), None)
            mlp = next((m for m in _GUESS_MLP if _get(first, m) is not None), None)
            if attn and mlp:
                return ArchSpec(base=lp.rsplit(".", 1)[0], layers=lp, attn_out=attn, mlp_out=mlp)
    raise ArchitectureError(
        f"cannot locate the decoder layers of model_type={model_type!r} "
        f"({type(model).__name__}): tried layer lists {', '.join(_GUESS_LAYERS)} with attention "
        f"modules {'/'.join(_GUESS_ATTN)} and MLP modules {'/'.join(_GUESS_MLP)}. Register it with "
        "steerlab.register_architecture(model_type, base=..., layers=..., attn_out=..., mlp_out=...)"
    )


@dataclass(frozen=True)
class ResidualWriter:
    """One parameter that writes into the residual stream, found by :func:`residual_writers`.

    Attributes:
        name: full parameter name in ``model.named_parameters()``.
        param: the parameter itself.
        axis: the axis of length ``hidden_size`` (see :class:`WeightRef`).
        kind: ``"embed"``, ``"attn"`` or ``"mlp"``.
        layer: decoder layer index, or None for embeddings.
    """

    name: str
    param: nn.Parameter
    axis: int
    kind: Literal["embed", "attn", "mlp"]
    layer: int | None


def residual_writers(model: nn.Module) -> list[ResidualWriter]:
    """Every parameter that writes into the residual stream: embeddings, then per layer the
    attention output and MLP output weights (and biases), per the model's :class:`ArchSpec`.

    Raises ArchitectureError when a layer has no attention or no MLP write among the listed
    paths (register the architecture with its weight paths).
    """
    import fnmatch

    spec = arch_spec(model)
    d = hidden_size(model)
    params = dict(model.named_parameters())
    out: list[ResidualWriter] = []

    def add(prefix: str, refs: tuple[WeightRef, ...], kind: str, layer: int | None) -> int:
        found = 0
        for ref in refs:
            pattern = f"{prefix}{ref.path}"
            names = (
                [n for n in params if fnmatch.fnmatchcase(n, pattern)]
                if "*" in pattern
                else ([pattern] if pattern in params else [])
            )
            for name in sorted(names):
                p = params[name]
                if p.dim() <= ref.axis or p.shape[ref.axis] != d:
                    raise ArchitectureError(f"{name}: expected size {d} on axis {ref.axis}, got shape {tuple(p.shape)}")
                out.append(ResidualWriter(name, p, ref.axis, kind, layer))  # type: ignore[arg-type]
                found += 1
        return found

    if not add("", spec.embed, "embed", None):
        raise ArchitectureError(f"no embedding weight found at {[r.path for r in spec.embed]}")
    for i in range(num_layers(model)):
        prefix = f"{spec.layers}.{i}."
        for refs, kind in ((spec.attn_write, "attn"), (spec.mlp_write, "mlp")):
            if not add(prefix, refs, kind, i):
                raise ArchitectureError(
                    f"layer {i}: no {kind} output weight among {[r.path for r in refs]}; pass "
                    f"{kind}_write=... to steerlab.register_architecture"
                )
    return out


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ModuleList of decoder layers."""
    return _get(model, arch_spec(model).layers)  # type: ignore[return-value]


def base_model(model: nn.Module) -> nn.Module:
    """The decoder stack without the LM head (``model.model`` for Llama, ``transformer`` for GPT-2)."""
    return _get(model, arch_spec(model).base)  # type: ignore[return-value]


def num_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


def hidden_size(model: nn.Module) -> int:
    cfg = model.config
    for key in ("hidden_size", "n_embd", "d_model"):
        if getattr(cfg, key, None):
            return int(getattr(cfg, key))
    return int(model.get_input_embeddings().weight.shape[1])


def check_layer(model: nn.Module, layer: int) -> int:
    """Return ``layer`` as a non-negative index, or raise a clear error when out of range."""
    n = num_layers(model)
    idx = layer + n if layer < 0 else layer
    if not 0 <= idx < n:
        raise ArchitectureError(f"layer {layer} is out of range: the model has {n} layers (0..{n - 1})")
    return idx


def check_site(site: str) -> Site:
    if site not in SITES:
        raise ArchitectureError(f"unknown site {site!r}; choose one of {', '.join(SITES)}")
    return site


def site_module(model: nn.Module, layer: int, site: Site) -> tuple[nn.Module, Literal["pre", "post"]]:
    """The module to hook for ``site`` at ``layer`` and whether to hook its input or output."""
    spec = arch_spec(model)
    block = decoder_layers(model)[check_layer(model, layer)]
    check_site(site)
    if site == "resid_pre":
        return block, "pre"
    if site == "resid_post":
        return block, "post"
    path = {"attn_out": spec.attn_out, "mlp_out": spec.mlp_out, "mlp_raw": spec.mlp_raw_path}[site]
    mod = _get(block, path)
    if mod is None:
        raise ArchitectureError(
            f"layer {layer} of {type(model).__name__} has no submodule {path!r} for site {site}; "
            "register the architecture with steerlab.register_architecture(...)"
        )
    return mod, "post"


def first_tensor(x: object) -> torch.Tensor:
    """The hidden-states tensor inside a module output (a tensor, or a tuple starting with one)."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return x[0]
    raise ArchitectureError(f"cannot find a hidden-states tensor in a module output of type {type(x).__name__}")


def replace_first(x: object, new: torch.Tensor) -> object:
    """``x`` with its hidden-states tensor replaced by ``new`` (same container type)."""
    if isinstance(x, torch.Tensor):
        return new
    if isinstance(x, tuple):
        return (new, *x[1:])
    if isinstance(x, list):
        return [new, *x[1:]]
    raise ArchitectureError(f"cannot replace hidden states in a module output of type {type(x).__name__}")
