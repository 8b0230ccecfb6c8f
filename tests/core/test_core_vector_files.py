"""Vector files are reproducible: the same vectors give the same bytes in every process (issue 19).

safetensors writes its header metadata in hash-map order, which is seeded per process; steerlab
rewrites the header in a fixed order. Checked across fresh interpreters, and against a reading
of the file done by hand from the format's definition.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import torch

_SAVE = textwrap.dedent("""
    import sys, torch
    from steerlab.vectors.io import save_vectors
    from steerlab.vectors.vector import SteeringVector, VectorMeta

    def meta(layer, name=""):
        return VectorMeta(
            model_id="tiny", config_hash="abc", hidden_size=8, num_layers=4, layer=layer, site="resid_post",
            method="mean_diff", positions="last", normalization="unit", activation_norm=2.5, raw_norm=1.5,
            n_examples=3, data_hash="d0", steerlab_version="0", name=name, extra={"b": 1, "a": [2, 3]},
        )

    g = torch.Generator().manual_seed(0)
    vecs = [SteeringVector(torch.randn(8, generator=g), meta(layer, name)) for layer, name in [(2, "z"), (1, ""), (3, "a")]]
    save_vectors(sys.argv[1], vecs)
""")


def test_the_same_vectors_give_the_same_bytes_in_every_process(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    paths = [tmp_path / f"v{i}.safetensors" for i in range(4)]
    for p in paths:  # fresh interpreters: a different hash seed each
        subprocess.run([sys.executable, "-c", _SAVE, str(p)], check=True, env=env, timeout=120)
    first = paths[0].read_bytes()
    assert all(p.read_bytes() == first for p in paths[1:])

    # the file read by hand: u64 little-endian header length, JSON header padded to 8 bytes, data
    n = int.from_bytes(first[:8], "little")
    assert (8 + n) % 8 == 0
    header = json.loads(first[8 : 8 + n])
    assert list(header) == ["__metadata__", "a", "resid_post.1", "z"]  # metadata first, then tensors by name
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    g = torch.Generator().manual_seed(0)
    made = {name: torch.randn(8, generator=g) for name in ["z", "resid_post.1", "a"]}
    data = first[8 + n :]
    for name, want in made.items():
        start, end = header[name]["data_offsets"]
        assert header[name]["dtype"] == "F32" and header[name]["shape"] == [8]
        got = torch.frombuffer(bytearray(data[start:end]), dtype=torch.float32)
        assert torch.equal(got, want), name

    # and steerlab reads it back: names, order of the metadata list, values
    from steerlab.vectors.io import load_vectors

    back = load_vectors(paths[0])
    assert list(back) == ["z", "resid_post.1", "a"]
    for name, want in made.items():
        assert torch.equal(back[name].vector, want)
