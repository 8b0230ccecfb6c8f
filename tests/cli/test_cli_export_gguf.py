"""`steerlab export-gguf`: read back with the gguf package, values equal strength × vector."""

from __future__ import annotations

import numpy as np
import pytest
from cli_fixtures import pairs_file, runner, tiny_dir  # noqa: F401 (fixtures)

from steerlab.cli import app
from steerlab.vectors.io import load_vectors


@pytest.mark.parametrize("strength", [1.0, -2.5])
def test_export_gguf_reads_back(runner, tiny_dir, pairs_file, tmp_path, strength):
    import gguf

    vec = tmp_path / "v.safetensors"
    res = runner.invoke(
        app, ["extract", str(tiny_dir), "--pairs", str(pairs_file), "--layers", "1,2", "--out", str(vec)]
    )
    assert res.exit_code == 0, res.output
    out = tmp_path / "v.gguf"
    res = runner.invoke(app, ["export-gguf", str(vec), "--out", str(out), "--strength", str(strength)])
    assert res.exit_code == 0, res.output

    reader = gguf.GGUFReader(str(out))
    tensors = {t.name: np.array(t.data, dtype=np.float32).reshape(-1) for t in reader.tensors}
    expected = {f"direction.{v.layer}": v.vector.numpy() * np.float32(strength) for v in load_vectors(vec).values()}
    assert sorted(tensors) == sorted(expected)  # resid_post at layer L is llama.cpp's direction.L
    for name, values in expected.items():
        np.testing.assert_array_equal(tensors[name], values)
    layer_count = reader.fields["controlvector.layer_count"]
    assert int(layer_count.parts[layer_count.data[0]][0]) == 2
