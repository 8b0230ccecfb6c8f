"""Export vectors as a llama.cpp control-vector GGUF (``--control-vector`` / ``--control-vector-scaled``).

llama.cpp adds tensor ``direction.N`` to the output of (0-based) decoder layer N, for N ≥ 1,
so a steerlab ``resid_post`` vector at layer L becomes ``direction.L`` and a ``resid_pre``
vector at layer L becomes ``direction.(L-1)``. Layer 0's output cannot be steered there, and
``attn_out``/``mlp_out`` vectors have no llama.cpp equivalent; both are refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from steerlab._io import apply_umask
from steerlab.errors import InputError
from steerlab.vectors.vector import SteeringVector, finite_float


def llama_cpp_layer(v: SteeringVector) -> int:
    layer = v.layer if v.site == "resid_post" else v.layer - 1 if v.site == "resid_pre" else None
    if layer is None:
        raise InputError(f"GGUF export: site {v.site} has no llama.cpp control-vector equivalent")
    if layer < 1:
        raise InputError(f"GGUF export: llama.cpp cannot steer the output of layer {layer} (needs layer ≥ 1)")
    return layer


def export_gguf(
    vectors: Iterable[SteeringVector] | Mapping[str, SteeringVector],
    path: str | os.PathLike[str],
    *,
    model_hint: str | None = None,
    strength: float = 1.0,
) -> Path:
    """Write ``vectors`` (times ``strength``) as a llama.cpp control vector.

    Args:
        model_hint: llama.cpp's ``controlvector.model_hint`` (default: the vectors' model_type-ish id).
    """
    import gguf

    vecs = list(vectors.values()) if isinstance(vectors, Mapping) else list(vectors)
    if not vecs:
        raise InputError("GGUF export: no vectors")
    strength = finite_float(strength, "GGUF export: strength")
    dims = {v.meta.hidden_size for v in vecs}
    if len(dims) != 1:
        raise InputError(f"GGUF export: vectors have different hidden sizes {sorted(dims)}")
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give the .gguf file to write")
    tensors: dict[int, np.ndarray] = {}
    for v in vecs:  # validate everything before a byte is written
        if not 0 <= v.layer < v.meta.num_layers:
            raise InputError(
                f"GGUF export: vector {v.name} is for layer {v.layer}, outside its model's {v.meta.num_layers} layers"
            )
        layer = llama_cpp_layer(v)
        if layer in tensors:
            raise InputError(f"GGUF export: two vectors map to llama.cpp layer {layer}")
        values = v.check_finite("GGUF export").vector.float().numpy() * strength
        if not np.isfinite(values).all():
            raise InputError(f"GGUF export: vector {v.name} times strength {strength:g} overflows float32")
        tensors[layer] = values.astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        writer = gguf.GGUFWriter(str(tmp), "controlvector")
        writer.add_string("controlvector.model_hint", model_hint or vecs[0].meta.model_id)
        writer.add_uint32("controlvector.layer_count", len(tensors))
        for layer, values in tensors.items():
            writer.add_tensor(f"direction.{layer}", values)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        apply_umask(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_gguf(path: str | os.PathLike[str]) -> dict[int, np.ndarray]:
    """Read a control-vector GGUF back: llama.cpp layer → vector."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {
        int(t.name.split(".")[1]): np.array(t.data, dtype=np.float32).reshape(-1)
        for t in reader.tensors
        if t.name.startswith("direction.")
    }
