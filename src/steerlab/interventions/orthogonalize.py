"""Weight orthogonalisation: bake directional ablation into a model's weights.

Directional ablation (:class:`~steerlab.interventions.Ablate`) removes a unit direction ``r``
from the residual stream with hooks. Because the residual stream is a sum of *writes* (the
embedding, then every attention and MLP output), the same effect can be had with no hooks
at all by editing every parameter that writes into the stream so that its writes have no
component along ``r`` (Arditi et al. 2024, "weight orthogonalisation"):

    W ← W − r (rᵀ W)        along the hidden axis of every residual writer
                            (:func:`steerlab.models.layers.residual_writers`: embeddings,
                            position embeddings, attention-output and MLP/expert-output
                            weights and their biases)

What the edited model is equivalent to, exactly (up to float rounding), per layout:

* **Write lands directly in the stream** (Llama, Mistral, Qwen, Phi-3, Mixtral and other
  MoE, GPT-2, GPT-NeoX): the edited model equals hook ablation of ``r`` at every layer's
  input and at every attention / MLP write (``Ablate(r)`` with its defaults).
* **Norm after the write** (Gemma 2/3, ``ArchSpec.norm_after_write``): the attention and MLP
  outputs pass an RMSNorm ``y = x / rms(x) ⊙ g`` *after* ``o_proj`` / ``down_proj`` and before
  the residual add. Editing ``o_proj`` against ``r`` would not remove ``r`` from ``y`` at all
  (the gain ``g`` rescales coordinates), and no edit of these weights can reproduce the
  *post-norm* projection ``y − (y·r) r``: that map is ``(I − r rᵀ) diag(g) x / rms(x)``,
  which is not an RMSNorm of any linear function of ``x`` unless ``g`` is constant. What is
  exact: since ``y·r = (x·(g ⊙ r)) / rms(x)``, the write ``y`` is orthogonal to ``r`` iff the
  pre-norm output ``x`` is orthogonal to ``u = (g ⊙ r) / ‖g ⊙ r‖``. So the attention / MLP
  weights (and biases) of each layer are orthogonalised against that layer's own ``u``
  (the gain of the norm that follows them), and the embedding against ``r``. The edited
  model then equals, exactly, the hook ablation :func:`weight_equivalent_ablation`: ``r``
  projected out of every layer's input, and ``u`` projected out of the input of every
  post-write norm. Its residual stream has no component along ``r`` anywhere, like
  ``Ablate(r)``'s; it differs from ``Ablate(r)`` only in the *length* of each write (the norm
  sees ``x`` without its ``u`` part instead of being rescaled afterwards). The size of that
  difference on a real model is measured by the refusal-direction study (``docs/refusal_direction.md``).

Tied embeddings (Gemma, GPT-2, many small models): the LM head shares its matrix with the
token embedding, so editing the embedding would silently edit the head too (and the logits
would no longer match the hook ablation, which never touches the head). The head is
therefore untied first — given its own copy of the unedited matrix — and the config says
``tie_word_embeddings: false``, so the saved directory reloads with the head it had.

Norm-preserving variant (``norm_preserving=True``, after the "biprojected" abliteration of
grimjim / heretic): after the projection, every write vector (each slice of a writer along
the hidden axis: an embedding row, an ``o_proj`` column, a bias) is rescaled to the length it
had before. Writes stay orthogonal to ``r`` (or ``u``), but the result is no longer
equivalent to any hook ablation; it trades exactness for keeping the weight norms the rest
of the network was trained with.

Example:
    >>> lm = load_model("default")
    >>> report = orthogonalize(lm.model, direction)          # in place
    >>> save_orthogonalized(lm, "gemma-abliterated", direction=direction)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from steerlab.errors import ArchitectureError, InputError
from steerlab.models.layers import arch_spec, decoder_layers, hidden_size, residual_writers, site_module

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from steerlab.models.hf import LanguageModel
    from steerlab.vectors.vector import SteeringVector

#: Rows of a large writer (an embedding) edited at a time, to bound temporary memory.
_CHUNK_ROWS = 16384

PROVENANCE_FILE = "steerlab_orthogonalization.json"


@dataclass(frozen=True)
class OrthogonalizationReport:
    """What :func:`orthogonalize` changed.

    Attributes:
        edited: names of the parameters edited, in order.
        untied: True when the LM head was untied from the embedding first.
        norm_after_write: the model's layout puts a norm after each write (Gemma 2/3), so its
            attention / MLP writers were edited against the per-layer gain-weighted direction.
        norm_preserving: the norm-preserving variant was used (not hook-equivalent).
        equivalent_to: the hook ablation the edited model reproduces, in words ("" if none).
    """

    edited: list[str]
    untied: bool
    norm_after_write: bool
    norm_preserving: bool
    equivalent_to: str
    extra: dict[str, Any] = field(default_factory=dict)


def unit_direction(direction: torch.Tensor | SteeringVector, d: int) -> torch.Tensor:
    """``direction`` as a float32 unit vector ``[d]``; zero, NaN or a wrong size is an InputError."""
    r = getattr(direction, "vector", direction)
    r = (r if isinstance(r, torch.Tensor) else torch.as_tensor(r)).detach().float().cpu()
    if r.dim() != 1 or r.shape[0] != d:
        raise InputError(f"orthogonalize: the direction must be [{d}], got {tuple(r.shape)}")
    if not torch.isfinite(r).all():
        raise InputError("orthogonalize: the direction has NaN or infinite values")
    n = float(r.double().norm())
    if n == 0.0:
        raise InputError("orthogonalize: the direction has zero norm")
    return (r.double() / n).float()


# ---------------------------------------------------------------------------- the gain after a write


def norm_gain(norm: nn.Module, d: int) -> torch.Tensor:
    """The elementwise gain ``g`` of an RMSNorm-like module ``y = x / rms(x) ⊙ g`` (``[d]``, float32).

    Read by probing the module, not from its parameters, so Gemma's ``1 + weight`` convention
    and plain ``weight`` conventions both come out right. Raises ArchitectureError when the
    module is not of that form (e.g. a LayerNorm, which subtracts the mean): then no weight
    edit before it can be exact.
    """
    p = next(norm.parameters(), None)
    dev = p.device if p is not None else torch.device("cpu")
    eps = float(getattr(norm, "eps", getattr(norm, "variance_epsilon", 0.0)) or 0.0)
    with torch.no_grad():
        ones = torch.ones(1, 1, d, device=dev, dtype=torch.float32)
        g: torch.Tensor = norm(ones).float().reshape(d) * (1.0 + eps) ** 0.5
        x = torch.randn(1, 3, d, generator=torch.Generator().manual_seed(0)).to(dev)
        rms = (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
        if not torch.allclose(norm(x).float(), x / rms * g, rtol=1e-4, atol=1e-5):
            raise ArchitectureError(
                f"{type(norm).__name__} after a residual write is not an RMSNorm with an elementwise gain; "
                "weight orthogonalisation cannot be made exact for this layout"
            )
    return g.cpu()


def write_directions(model: nn.Module, direction: torch.Tensor) -> dict[tuple[int, str], torch.Tensor]:
    """The unit direction each layer's attention / MLP writers are orthogonalised against.

    ``r`` itself for layouts whose writes land directly in the stream; for norm-after-write
    layouts (Gemma 2/3), ``u = g ⊙ r / ‖g ⊙ r‖`` with ``g`` the gain of the norm that follows
    that write (see the module docstring). Keys are ``(layer, "attn" | "mlp")``.
    """
    spec = arch_spec(model)
    d = hidden_size(model)
    r = unit_direction(direction, d)
    out: dict[tuple[int, str], torch.Tensor] = {}
    for i in range(len(decoder_layers(model))):
        for kind in ("attn", "mlp"):
            if not spec.norm_after_write:
                out[(i, kind)] = r
                continue
            u = norm_gain(_post_write_norm(model, i, kind), d) * r
            if float(u.norm()) == 0.0:
                raise ArchitectureError(f"layer {i}: the {kind} norm's gain is orthogonal to the direction")
            out[(i, kind)] = u / u.norm()
    return out


def _post_write_norm(model: nn.Module, layer: int, kind: str) -> nn.Module:
    """The norm module after a layer's attention (``kind="attn"``) or MLP write, on norm-after-write layouts
    (there the ``attn_out`` / ``mlp_out`` sites are the outputs of those norms)."""
    return site_module(model, layer, "attn_out" if kind == "attn" else "mlp_out")[0]


# ---------------------------------------------------------------------------- editing


def _project_out_(param: torch.Tensor, axis: int, v: torch.Tensor, norm_preserving: bool) -> None:
    """In place: remove ``v`` from ``param`` along ``axis`` (the hidden axis), chunk by chunk."""
    x = param.data.movedim(axis, -1)  # a view: [..., d]
    flat = x.reshape(-1, x.shape[-1]) if x.is_contiguous() else None
    vv = v.to(device=param.device, dtype=torch.float32)
    if flat is None:  # a non-contiguous view (hidden axis not last): edit a copy, write it back
        y = x.float()
        y = _projected(y, vv, norm_preserving)
        x.copy_(y.to(x.dtype))
        return
    for s in range(0, flat.shape[0], _CHUNK_ROWS):
        rows = flat[s : s + _CHUNK_ROWS]
        rows.copy_(_projected(rows.float(), vv, norm_preserving).to(rows.dtype))


def _projected(y: torch.Tensor, v: torch.Tensor, norm_preserving: bool) -> torch.Tensor:
    """``y − (y·v) v`` for each row of ``y`` ``[..., d]``; optionally rescaled to each row's old length."""
    out = y - (y @ v).unsqueeze(-1) * v
    if norm_preserving:
        before, after = y.norm(dim=-1, keepdim=True), out.norm(dim=-1, keepdim=True)
        out = out * torch.where(after > 0, before / after.clamp_min(1e-30), torch.ones_like(after))
    return out


def untie_output_embeddings(model: PreTrainedModel) -> bool:
    """Give the LM head its own copy of a matrix it shares with the token embedding.

    Returns True when the head was tied (and is now untied, with ``tie_word_embeddings`` set
    to False in the config so a saved copy reloads untied).
    """
    # transformers leaves get_output_embeddings untyped; both return a layer with a weight (or None)
    head = model.get_output_embeddings()  # type: ignore[no-untyped-call]  # untyped in transformers
    emb = model.get_input_embeddings()
    if head is None or emb is None:
        return False
    head_w, emb_w = cast(torch.Tensor, head.weight), cast(torch.Tensor, emb.weight)
    if head_w.data_ptr() != emb_w.data_ptr():
        return False
    head.weight = nn.Parameter(head_w.detach().clone(), requires_grad=head_w.requires_grad)
    for cfg in {id(c): c for c in (model.config, _text_config(model.config))}.values():
        cfg.tie_word_embeddings = False
    return True


def _text_config(config: Any) -> Any:
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def orthogonalize(
    model: PreTrainedModel, direction: torch.Tensor | SteeringVector, *, norm_preserving: bool = False
) -> OrthogonalizationReport:
    """Edit ``model`` in place so no residual write has a component along ``direction``.

    Args:
        model: a Hugging Face causal LM (``lm.model``).
        direction: ``[d]`` tensor or a SteeringVector; only its direction is used.
        norm_preserving: rescale every edited write vector to its original length (not
            equivalent to hook ablation; see the module docstring).

    Returns:
        An :class:`OrthogonalizationReport` (edited parameters, whether the head was untied,
        and which hook ablation the result equals).

    Example:
        >>> rep = orthogonalize(lm.model, vec)
        >>> rep.untied, len(rep.edited)
        (True, 37)
    """
    spec = arch_spec(model)
    d = hidden_size(model)
    r = unit_direction(direction, d)
    per_write = write_directions(model, r)
    writers = residual_writers(model)  # checked before anything is edited
    untied = untie_output_embeddings(model)
    edited: list[str] = []
    with torch.no_grad():
        for w in writers:
            v = r if w.kind == "embed" else per_write[(w.layer, w.kind)]  # type: ignore[index]
            _project_out_(w.param, w.axis, v, norm_preserving)
            edited.append(w.name)
    if norm_preserving:
        equivalent = ""
    elif spec.norm_after_write:
        equivalent = (
            "weight_equivalent_ablation: r out of every layer input (resid_pre) and, per layer, "
            "u = g⊙r/|g⊙r| out of the input of each post-write norm"
        )
    else:
        equivalent = "Ablate(r): every layer, sites resid_pre, attn_out, mlp_out"
    return OrthogonalizationReport(edited, untied, spec.norm_after_write, norm_preserving, equivalent)


# ---------------------------------------------------------------------------- the equivalent hook ablation


@contextlib.contextmanager
def weight_equivalent_ablation(model: nn.Module, direction: torch.Tensor | SteeringVector) -> Iterator[None]:
    """The hook ablation that :func:`orthogonalize` (without ``norm_preserving``) reproduces exactly.

    For layouts whose writes land directly in the residual stream it is ``Ablate(r)``
    (every layer; resid_pre, attn_out, mlp_out). For norm-after-write layouts (Gemma 2/3) it is
    ``r`` projected out of every layer's input plus, per layer, ``u = g ⊙ r / ‖g ⊙ r‖``
    projected out of the *input* of the norm after each attention / MLP write (forward
    pre-hooks on those norms). Hooks are removed on exit, even after an error.

    Example:
        >>> with weight_equivalent_ablation(lm.model, vec):
        ...     hooked = lm.model(**batch).logits
    """
    from steerlab.interventions.ablate import EVERY_RESIDUAL_WRITE, Ablate
    from steerlab.interventions.base import intervene

    spec = arch_spec(model)
    r = unit_direction(direction, hidden_size(model))
    if not spec.norm_after_write:
        with intervene(model, Ablate(r, sites=EVERY_RESIDUAL_WRITE)):
            yield
        return
    handles = []
    try:
        for (layer, kind), u in write_directions(model, r).items():
            norm = _post_write_norm(model, layer, kind)
            handles.append(norm.register_forward_pre_hook(_project_input(u)))
        with intervene(model, Ablate(r, sites=("resid_pre",))):
            yield
    finally:
        for h in handles:
            h.remove()


def _project_input(u: torch.Tensor) -> Callable[[nn.Module, tuple[Any, ...]], tuple[Any, ...]]:
    cache: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        key = (x.device, x.dtype)
        if key not in cache:
            cache[key] = u.to(device=x.device, dtype=x.dtype)
        uu = cache[key]
        return (x - (x @ uu).unsqueeze(-1) * uu, *args[1:])

    return hook


# ---------------------------------------------------------------------------- copies and saving


def orthogonalized_copy(
    lm: LanguageModel, direction: torch.Tensor | SteeringVector, *, norm_preserving: bool = False
) -> tuple[LanguageModel, OrthogonalizationReport]:
    """A new LanguageModel whose weights are an orthogonalised copy of ``lm``'s (``lm`` is untouched)."""
    import copy

    from steerlab.models.hf import LanguageModel

    model = copy.deepcopy(lm.model)
    model.__dict__.pop("_steerlab_hook_manager", None)  # hooks belong to the original
    report = orthogonalize(model, direction, norm_preserving=norm_preserving)
    return LanguageModel(
        model=model,
        tokenizer=lm.tokenizer,
        model_id=f"{lm.model_id} (orthogonalised)",
        chat=lm.chat,
        batch_size=lm.batch_size,
    ), report


def save_orthogonalized(
    lm: LanguageModel,
    out_dir: str | os.PathLike[str],
    *,
    direction: torch.Tensor | SteeringVector,
    report: OrthogonalizationReport,
    overwrite: bool = False,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write an already orthogonalised ``lm`` as a plain Hugging Face model directory.

    The directory (``config.json``, safetensors weights, tokenizer files) loads with
    ``transformers.AutoModelForCausalLM.from_pretrained`` alone; ``steerlab_orthogonalization.json``
    beside them records the direction and what the model is equivalent to. Written to a
    temporary sibling and renamed, so a crash never leaves a half-written model.

    Args:
        lm: the edited model (see :func:`orthogonalize` / :func:`orthogonalized_copy`).
        out_dir: target directory; must not exist (or be empty) unless ``overwrite``.
        direction: the direction used (stored, as a unit vector, in the provenance file).
        report: what :func:`orthogonalize` returned.
        overwrite: replace an existing directory.
        provenance: extra fields for the provenance file (source model, vector file, ...).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out}: already exists and is not empty; choose another --out or pass --force")
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        lm.model.save_pretrained(tmp)
        lm.tokenizer.save_pretrained(tmp)
        r = unit_direction(direction, lm.hidden_size)
        record = {
            "source_model": lm.model_id,
            "direction_unit": [round(float(x), 8) for x in r],
            **asdict(report),
            **(provenance or {}),
        }
        (tmp / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
