"""The study-config benchmark forces every model of a config to float32 with overrides the config accepts."""

from importlib import resources

import pytest
from bench.bench_study_configs import CONFIGS, _dtype_overrides

from steerlab.experiments.engine.loading import load_config


@pytest.mark.parametrize("name", ["demo.yaml", "prefs_refusal_instruct.yaml", "refusal_direction.yaml"])
def test_float32_overrides_reach_every_model_and_shipped_adds_none(name):
    path = CONFIGS / name
    args = _dtype_overrides(path, "float32")
    assert _dtype_overrides(path, "shipped") == []
    # pairs of "--set key=value", one per model
    assert args[::2] == ["--set"] * (len(args) // 2)
    shipped = load_config(str(resources.files("steerlab.experiments").joinpath("configs", name)))
    forced = load_config(str(path), overrides=args[1::2])
    assert len(forced.models) == len(shipped.models) == len(args) // 2
    assert [m.dtype for m in forced.models] == ["float32"] * len(shipped.models)
    assert [m.id for m in forced.models] == [m.id for m in shipped.models]
