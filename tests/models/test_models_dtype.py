"""dtype="auto": bf16 exactly where the device has native bf16 matmul, fp32 elsewhere."""

from __future__ import annotations

import pytest
import torch

from steerlab.errors import InputError
from steerlab.models import loading
from steerlab.models.loading import cpu_native_bf16, resolve_dtype

EPYC_FLAGS = "fpu vme de pse avx2 avx512f avx512bw avx512_bf16 avx512_vnni"
OLDER_FLAGS = "fpu vme de pse avx2 avx512f avx512bw avx512_vnni"


def _cpuinfo(monkeypatch, tmp_path, flags: str | None):
    text = "processor\t: 0\nvendor_id\t: AuthenticAMD\n" + (f"flags\t\t: {flags}\n" if flags is not None else "")
    (tmp_path / "cpuinfo").write_text(text)
    monkeypatch.setattr(loading, "CPUINFO", tmp_path / "cpuinfo")


@pytest.mark.parametrize(
    ("flags", "expected", "why"),
    [
        (EPYC_FLAGS, "bfloat16", "avx512_bf16"),
        (OLDER_FLAGS + " amx_bf16 amx_tile", "bfloat16", "amx_bf16"),
        (OLDER_FLAGS, "float32", "no native bf16"),
        (None, "float32", "no native bf16"),
    ],
)
def test_auto_on_cpu_follows_the_cpu_flags(monkeypatch, tmp_path, flags, expected, why):
    _cpuinfo(monkeypatch, tmp_path, flags)
    for request in ("auto", None):
        name, reason = resolve_dtype(request, "cpu")
        assert name == expected and why in reason and reason.startswith("auto")


def test_unreadable_cpuinfo_means_fp32(monkeypatch, tmp_path):
    monkeypatch.setattr(loading, "CPUINFO", tmp_path / "absent")
    assert cpu_native_bf16() is None
    assert resolve_dtype("auto", "cpu")[0] == "float32"


@pytest.mark.parametrize(("supported", "expected"), [(True, "bfloat16"), (False, "float32")])
def test_auto_on_cuda_asks_the_device(monkeypatch, supported, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    assert resolve_dtype("auto", "cuda")[0] == expected
    assert resolve_dtype(None, "cuda:1")[0] == expected


def test_auto_on_mps_is_fp32_and_explicit_names_are_kept(monkeypatch, tmp_path):
    _cpuinfo(monkeypatch, tmp_path, EPYC_FLAGS)
    assert resolve_dtype("auto", "mps")[0] == "float32"
    assert resolve_dtype("float32", "cpu") == ("float32", "asked for")
    assert resolve_dtype("fp32", "cuda") == ("float32", "asked for")
    assert resolve_dtype("bf16", "cpu") == ("bfloat16", "asked for")
    with pytest.raises(InputError, match="unknown dtype 'float8'"):
        resolve_dtype("float8", "cpu")


def test_this_machine_reads_its_real_flags():
    """The flag found (or not) is one the kernel really lists for this CPU."""
    flags = loading.cpu_flags()
    found = cpu_native_bf16()
    assert found is None or found in flags
    assert (found is not None) == bool({"avx512_bf16", "amx_bf16"} & flags)


@pytest.mark.parametrize(("flags", "warned"), [(EPYC_FLAGS, False), (OLDER_FLAGS, True), ("fpu sse avx2", True)])
def test_explicit_bf16_on_a_cpu_without_native_bf16_is_kept_and_says_so(monkeypatch, tmp_path, flags, warned):
    _cpuinfo(monkeypatch, tmp_path, flags)
    name, reason = resolve_dtype("bfloat16", "cpu")
    assert name == "bfloat16" and reason.startswith("asked for")
    assert ("no native bf16" in reason) is warned
    assert resolve_dtype("bfloat16", "cuda")[1] == "asked for"  # a GPU's bf16 is not judged by CPU flags
    assert resolve_dtype("float32", "cpu") == ("float32", "asked for")


def test_every_shipped_config_leaves_the_dtype_to_auto():
    from importlib import resources

    import yaml

    configs = resources.files("steerlab.experiments").joinpath("configs")
    for cfg in configs.iterdir():
        if cfg.name.endswith(".yaml"):
            models = (yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}).get("models") or []
            assert all(m.get("dtype", "auto") == "auto" for m in models), cfg.name


@pytest.mark.parametrize(("flags", "noted"), [(OLDER_FLAGS, True), (EPYC_FLAGS, False)])
def test_load_model_notes_emulated_bf16_in_one_line(monkeypatch, tmp_path, capsys, flags, noted):
    from conftest import save_tiny
    from steerlab.models.load import load_model

    model_dir = save_tiny(tmp_path / "tiny")
    _cpuinfo(monkeypatch, tmp_path, flags)
    lm = load_model(str(model_dir), device="cpu", dtype="bfloat16")
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert lm.model.dtype == torch.bfloat16
    assert lm.dtype_reason == (loading.EMULATED_BF16 if noted else "asked for")
    assert err == ([f"note: {model_dir}: bfloat16 {loading.EMULATED_BF16}"] if noted else [])
