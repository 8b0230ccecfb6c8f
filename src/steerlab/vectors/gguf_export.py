"""Export vectors as a llama.cpp control-vector GGUF (``--control-vector`` / ``--control-vector-scaled``).

llama.cpp adds tensor ``direction.N`` to the output of (0-based) decoder layer N, for N ≥ 1,
so a steerlab ``resid_post`` vector at layer L becomes ``direction.L`` and a ``resid_pre``
vector at layer L becomes ``direction.(L-1)``. Layer 0's output cannot be steered there, and
``attn_out``/``mlp_out`` vectors have no llama.cpp equivalent; both are refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from steerlab.errors import InputError
from steerlab.vectors.vector import SteeringVector


def llama_cpp_layer(v: SteeringVector) -> int:
    layer = v.layer if v.site == "resid_post" else v.layer - 1 if v.site == "resid_pre" else None
    if layer is None:
        raise InputError(f"GGUF export: site {v.site} has no llama.cpp control-vector equivalent")
    if layer < 1:
        raise InputError(f"GGUF export: llama.cpp cannot steer the output of layer {layer} (needs layer ≥ 1)")
    return layer


def export_gguf(vectors: Iterable[SteeringVector], path: str | os.PathLike[str], *, model_hint: str | None = None,
                strength: float = 1.0) -> Path:
    """Write ``vectors`` (times ``strength``) as a llama.cpp control vector.

    Args:
        model_hint: llama.cpp's ``controlvector.model_hint`` (default: the vectors' model_type-ish id).
    """
    import gguf

    vecs = list(vectors)
    if not vecs:
        raise InputError("GGUF export: no vectors")
    dims = {v.meta.hidden_size for v in vecs}
    if len(dims) != 1:
        raise InputError(f"GGUF export: vectors have different hidden sizes {sorted(dims)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), "controlvector")
    writer.add_string("controlvector.model_hint", model_hint or vecs[0].meta.model_id)
    writer.add_uint32("controlvector.layer_count", len(vecs))
    seen = set()
    for v in vecs:
        layer = llama_cpp_layer(v)
        if layer in seen:
            raise InputError(f"GGUF export: two vectors map to llama.cpp layer {layer}")
        seen.add(layer)
        writer.add_tensor(f"direction.{layer}", (v.vector.float().numpy() * strength).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, path)
    return path


def read_gguf(path: str | os.PathLike[str]) -> dict[int, np.ndarray]:
    """Read a control-vector GGUF back: llama.cpp layer → vector."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {int(t.name.split(".")[1]): np.array(t.data, dtype=np.float32).reshape(-1)
            for t in reader.tensors if t.name.startswith("direction.")}
