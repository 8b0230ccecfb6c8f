"""Vector files: safetensors with provenance metadata, and the compatibility check on load.

Layout: one tensor per vector (``[hidden_size]`` float32), named by the vector's name
(``"{site}.{layer}"`` unless it was given one); the safetensors header metadata holds
``format`` (``steerlab-vector/2``; ``/1`` files, which had no names, still load) and
``vectors`` (a JSON list of :class:`VectorMeta`, one per tensor, in order).

The same vectors always give the same bytes: the header is written with its keys in a fixed
order (safetensors itself writes the metadata in hash-map order, which changes from run to run).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from steerlab._io import atomic_write_bytes
from steerlab.errors import InputError, VectorMismatchError
from steerlab.vectors.vector import FORMAT_VERSION, READABLE_FORMATS, SteeringVector, VectorMeta, VectorSet


def save_vectors(
    path: str | os.PathLike[str], vectors: Iterable[SteeringVector] | Mapping[str, SteeringVector]
) -> Path:
    """Write vectors (a :class:`VectorSet`, a mapping or a list) to one safetensors file, atomically.

    Vectors with NaN or infinite values are refused; names must be unique in a file.
    """
    from safetensors.torch import save

    vecs = list(vectors.values()) if isinstance(vectors, Mapping) else list(vectors)
    if not vecs:
        raise InputError("save_vectors: nothing to save")
    tensors: dict[str, torch.Tensor] = {}
    for v in vecs:
        if v.name in tensors:
            raise InputError(f"save_vectors: two vectors named {v.name!r}; give them distinct names")
        v.check_finite("save_vectors")
        tensors[v.name] = v.vector.detach().to("cpu", torch.float32).contiguous()
    meta = {"format": FORMAT_VERSION, "vectors": json.dumps([v.meta.to_json() for v in vecs])}
    path = Path(path)
    atomic_write_bytes(path, canonical_header(save(tensors, metadata=meta)))
    return path


def canonical_header(data: bytes) -> bytes:
    """A safetensors file with its JSON header rewritten in a fixed order (``__metadata__`` first,
    its keys sorted; then the tensors, sorted by name); the tensor bytes are unchanged.

    The header is an 8-byte little-endian length, then JSON padded with spaces to a multiple of 8
    bytes; data offsets count from the end of the header, so reordering the header moves nothing.
    """
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    ordered = ({"__metadata__": dict(sorted(meta.items()))} if meta is not None else {}) | dict(sorted(header.items()))
    text = json.dumps(ordered, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n :]


def _read(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {}), {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise InputError(f"{path}: not a readable safetensors file ({e})") from None


def load_vectors(path: str | os.PathLike[str], model: object | None = None, *, strict: bool = True) -> VectorSet:
    """Read every vector in a file as a :class:`VectorSet`; with ``model``, refuse vectors that do not fit it.

    Args:
        path: a file written by :func:`save_vectors`.
        model: a :class:`~steerlab.models.LanguageModel` (or None to skip the check).
        strict: also require the same architecture config (config hash). With
            ``strict=False`` only hidden size and layer range must fit, e.g. to apply a chat
            model's vector to its base model whose config differs.

    Raises:
        InputError: not a steerlab vector file, malformed metadata, a listed tensor missing,
            a tensor of the wrong shape, or NaN/infinite values.
        VectorMismatchError: the vectors were made for a model that ``model`` is not.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such vector file")
    header, tensors = _read(path)
    if header.get("format") not in READABLE_FORMATS:
        raise InputError(f"{path}: not a steerlab vector file (format={header.get('format')!r})")
    if "vectors" not in header:
        raise InputError(f"{path}: the header has no 'vectors' metadata")
    try:
        records = json.loads(header["vectors"])
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: the 'vectors' metadata is not valid JSON ({e.msg})") from None
    if not isinstance(records, list) or not records:
        raise InputError(f"{path}: the 'vectors' metadata must be a non-empty list")
    out = []
    for rec in records:
        m = VectorMeta.from_json(rec, source=str(path))
        if m.key not in tensors:
            raise InputError(f"{path}: metadata lists vector {m.key!r} but the file has no such tensor")
        t = tensors[m.key]
        if tuple(t.shape) != (m.hidden_size,):
            raise InputError(f"{path}: vector {m.key!r} has shape {tuple(t.shape)}, expected ({m.hidden_size},)")
        out.append(SteeringVector(t.float(), m).check_finite(str(path)))
    vecs = VectorSet(out)
    if model is not None:
        for v in vecs.values():
            check_compatible(v, model, strict=strict, source=str(path))
    return vecs


def load_vector(
    path: str | os.PathLike[str],
    model: object | None = None,
    *,
    layer: int | None = None,
    name: str | None = None,
    strict: bool = True,
) -> SteeringVector:
    """One vector from a file: the only one, the one at ``layer``, or the one called ``name``."""
    vecs = load_vectors(path, model, strict=strict)
    if name is not None:
        if name not in vecs:
            raise InputError(f"{path}: no vector named {name!r}; it holds {', '.join(vecs)}")
        return vecs[name]
    found = list(vecs.values()) if layer is None else vecs.at(layer)
    if not found:
        raise InputError(f"{path}: no vector at layer {layer}")
    if len(found) > 1:
        raise InputError(
            f"{path}: holds {len(found)} vectors ({', '.join(v.name for v in found)}); choose one with layer= or name="
        )
    return found[0]


def check_compatible(v: SteeringVector, model: object, *, strict: bool = True, source: str = "vector") -> None:
    """Raise :class:`VectorMismatchError` when ``v`` cannot be applied to ``model``."""
    m = v.meta
    hidden = getattr(model, "hidden_size", None)
    n_layers = getattr(model, "n_layers", None)
    name = getattr(model, "model_id", "the model")
    if hidden is not None and hidden != m.hidden_size:
        raise VectorMismatchError(
            f"{source}: vector was made for {m.model_id} (hidden size {m.hidden_size}); {name} has hidden size {hidden}"
        )
    if n_layers is not None and not 0 <= m.layer < n_layers:
        raise VectorMismatchError(f"{source}: vector is for layer {m.layer} but {name} has {n_layers} layers")
    cfg = getattr(model, "config_hash", None)
    if strict and cfg is not None and cfg != m.config_hash:
        raise VectorMismatchError(
            f"{source}: vector was made for {m.model_id} (config {m.config_hash}), not {name} (config {cfg}); "
            "pass strict=False (CLI: --allow-other-model) to apply it anyway"
        )
