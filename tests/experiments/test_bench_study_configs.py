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


def test_a_ratio_needs_both_runs_on_one_day_and_one_kind_of_cpu(monkeypatch):
    import bench.bench_study_configs as bsc

    old = {"config": "x.yaml", "ok": True, "error": "", "wall_s": 120.0, "cpu_s": 200.0, "load_before": 1.0}
    old |= {"load_after": 2.0, "budget_min": 10.0, "run_dir": "r", "date": "2026-11-24"}
    pair = bsc.upgrade(old)
    assert pair["float32"]["wall_s"] == 120.0 and pair["float32"]["dtypes"] == ["float32"]
    assert bsc.upgrade(pair) is pair
    new = {**old, "requested": "shipped", "dtypes": ["bfloat16"], "wall_s": 60.0, "date": "2026-12-04"}
    written: list[str] = []
    monkeypatch.setattr(bsc, "write_section", lambda _path, _head, text: written.append(text))
    res = {"cores": 2, "torch": "t", "runs": {"x": {**pair, "shipped": new, "date": "2026-12-04"}}}
    bsc.write_docs(res)
    row = next(line for line in written[0].splitlines() if line.startswith("| `x.yaml`"))
    assert "2026-11-24 / 2026-12-04" in row and "2.00×" not in row  # different days: no ratio
    res["runs"]["x"]["float32"] = {**pair["float32"], "date": "2026-12-04"}
    bsc.write_docs(res)
    row = next(line for line in written[1].splitlines() if line.startswith("| `x.yaml`"))
    assert "| 2026-12-04 |" in row and "2.00×" not in row  # same day, CPU not recorded: no ratio
    res["runs"]["x"]["float32"]["cpu_native_bf16"] = None  # an AVX2-only VM in the morning,
    res["runs"]["x"]["shipped"]["cpu_native_bf16"] = "avx512_bf16"  # a native-bf16 one at night
    bsc.write_docs(res)
    row = next(line for line in written[2].splitlines() if line.startswith("| `x.yaml`"))
    assert "2.00×" not in row and "CPU bf16: emulated" in row and "CPU bf16: avx512_bf16" in row
    res["runs"]["x"]["float32"]["cpu_native_bf16"] = "avx512_bf16"
    bsc.write_docs(res)
    row = next(line for line in written[3].splitlines() if line.startswith("| `x.yaml`"))
    assert "**2.00×**" in row and "| 2026-12-04 |" in row  # 120 s / 60 s


def test_a_config_measured_only_as_shipped_gets_its_row(monkeypatch):
    import bench.bench_study_configs as bsc

    run = {"config": "y.yaml", "requested": "shipped", "dtypes": ["float32"], "ok": True, "error": "", "wall_s": 353.3}
    run |= {"cpu_s": 684.0, "load_before": 1.95, "load_after": 1.92, "budget_min": 10.0, "run_dir": "r"}
    written: list[str] = []
    monkeypatch.setattr(bsc, "write_section", lambda _path, _head, text: written.append(text))
    bsc.write_docs({"cores": 2, "torch": "t", "runs": {"prefs_y": {"shipped": run, "date": "2026-12-04"}}})
    row = next(line for line in written[0].splitlines() if line.startswith("| `prefs_y.yaml`"))
    assert row.split(" | ")[1:5] == ["10 min", "not run", "5.9 min (11.4 CPU-min; load 1.9 → 1.9)", "float32"]


def test_one_boot_of_one_machine_decides_the_ratio_where_both_runs_recorded_it(monkeypatch):
    import bench.bench_study_configs as bsc

    run = {"config": "z.yaml", "ok": True, "error": "", "wall_s": 300.0, "cpu_s": 500.0, "load_before": 1.0}
    run |= {"load_after": 1.0, "budget_min": 10.0, "run_dir": "r", "cpu_native_bf16": "avx512_bf16"}
    before = {**run, "requested": "float32", "dtypes": ["float32"], "date": "2026-12-04", "boot_id": "a"}
    after = {**run, "requested": "shipped", "dtypes": ["bfloat16"], "wall_s": 100.0, "date": "2026-12-05"}
    written: list[str] = []
    monkeypatch.setattr(bsc, "write_section", lambda _path, _head, text: written.append(text))
    for boot, ratio in (("a", True), ("b", False)):  # across midnight on one boot; a reboot the same night
        pair = {"float32": before, "shipped": {**after, "boot_id": boot}, "date": "2026-12-05"}
        assert bsc.side_by_side(pair) is ratio
        bsc.write_docs({"cores": 2, "torch": "t", "runs": {"z": pair}})
        row = next(line for line in written[-1].splitlines() if line.startswith("| `z.yaml`"))
        assert ("**3.00×**" in row) is ratio and "2026-12-04 / 2026-12-05" in row  # 300 s / 100 s
    same_day_other_boot = {"float32": before, "shipped": {**after, "date": "2026-12-04", "boot_id": "b"}}
    assert not bsc.side_by_side(same_day_other_boot)
    assert bsc.boot_id() == bsc.boot_id()  # stable within one boot (empty off Linux)
