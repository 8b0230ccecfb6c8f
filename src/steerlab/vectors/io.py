"""Vector files: safetensors with provenance metadata, and the compatibility check on load.

Layout: one tensor per vector, named ``"{site}.{layer}"`` (``[hidden_size]`` float32); the
safetensors header metadata holds ``format`` (``steerlab-vector/1``) and ``vectors`` (a JSON
list of :class:`VectorMeta`, one per tensor, in order).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from steerlab._io import atomic_write_bytes
from steerlab.errors import InputError, VectorMismatchError
from steerlab.vectors.vector import FORMAT_VERSION, SteeringVector, VectorMeta


def _key(v: SteeringVector) -> str:
    return f"{v.meta.site}.{v.meta.layer}"


def save_vectors(path: str | os.PathLike[str], vectors: Iterable[SteeringVector] | Mapping[int, SteeringVector]) -> Path:
    """Write vectors (a list, or the dict returned by :func:`extract`) to one safetensors file, atomically."""
    from safetensors.torch import save

    vecs = list(vectors.values()) if isinstance(vectors, Mapping) else list(vectors)
    if not vecs:
        raise InputError("save_vectors: nothing to save")
    tensors: dict[str, torch.Tensor] = {}
    for v in vecs:
        if _key(v) in tensors:
            raise InputError(f"save_vectors: two vectors for {_key(v)}; save them to separate files")
        tensors[_key(v)] = v.vector.detach().to("cpu", torch.float32).contiguous()
    meta = {"format": FORMAT_VERSION, "vectors": json.dumps([v.meta.to_json() for v in vecs])}
    path = Path(path)
    atomic_write_bytes(path, save(tensors, metadata=meta))
    return path


def load_vectors(path: str | os.PathLike[str], model: object | None = None, *, strict: bool = True) -> list[SteeringVector]:
    """Read every vector in a file; with ``model`` given, refuse vectors that do not fit it.

    Args:
        path: a file written by :func:`save_vectors`.
        model: a :class:`~steerlab.models.LanguageModel` (or None to skip the check).
        strict: also require the same architecture config (config hash). With
            ``strict=False`` only hidden size and layer range must fit, e.g. to apply a chat
            model's vector to its base model whose config differs.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such vector file")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise InputError(f"{path}: not a readable safetensors file ({e})") from None
    if header.get("format") != FORMAT_VERSION:
        raise InputError(f"{path}: not a steerlab vector file (format={header.get('format')!r})")
    metas = [VectorMeta.from_json(d) for d in json.loads(header["vectors"])]
    out = [SteeringVector(tensors[f"{m.site}.{m.layer}"], m) for m in metas]
    if model is not None:
        for v in out:
            check_compatible(v, model, strict=strict, source=str(path))
    return out


def load_vector(path: str | os.PathLike[str], model: object | None = None, *, layer: int | None = None,
                strict: bool = True) -> SteeringVector:
    """One vector from a file: the only one, or the one at ``layer``."""
    vecs = load_vectors(path, model, strict=strict)
    if layer is not None:
        vecs = [v for v in vecs if v.layer == layer]
        if not vecs:
            raise InputError(f"{path}: no vector at layer {layer}")
    if len(vecs) > 1:
        layers = ", ".join(str(v.layer) for v in vecs)
        raise InputError(f"{path}: holds vectors for layers {layers}; choose one with layer=")
    return vecs[0]


def check_compatible(v: SteeringVector, model: object, *, strict: bool = True, source: str = "vector") -> None:
    """Raise :class:`VectorMismatchError` when ``v`` cannot be applied to ``model``."""
    m = v.meta
    hidden = getattr(model, "hidden_size", None)
    n_layers = getattr(model, "n_layers", None)
    name = getattr(model, "model_id", "the model")
    if hidden is not None and hidden != m.hidden_size:
        raise VectorMismatchError(
            f"{source}: vector was made for {m.model_id} (hidden size {m.hidden_size}); "
            f"{name} has hidden size {hidden}"
        )
    if n_layers is not None and not 0 <= m.layer < n_layers:
        raise VectorMismatchError(f"{source}: vector is for layer {m.layer} but {name} has {n_layers} layers")
    cfg = getattr(model, "config_hash", None)
    if strict and cfg is not None and cfg != m.config_hash:
        raise VectorMismatchError(
            f"{source}: vector was made for {m.model_id} (config {m.config_hash}), not {name} (config {cfg}); "
            "pass strict=False (CLI: --allow-other-model) to apply it anyway"
        )
