"""A YAML config file → the validated config model its ``kind`` names.

    load_config(path, overrides)      read, apply ``key.path=value`` overrides, validate
    parse_config(raw, source, ...)    the same for a mapping already read
    apply_override(raw, "a.b=value")  one override, the value parsed as YAML

Errors are one :class:`~steerlab.errors.ConfigError` line naming the file and the field path.
Besides each kind's own rules, every number in a config must be representable in the dtype its
models compute in (a strength of 1e40 cannot even become a float32 tensor), so such a config is
refused here, before any model loads or any work is done.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from steerlab._yaml import StrictLoader
from steerlab.errors import ConfigError, SteerlabError
from steerlab.experiments.engine.config import ExperimentConfig
from steerlab.experiments.engine.registry import get_kind, known_kinds


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` to a raw config dict; the value is parsed as YAML (so 3 → int)."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key.path=value")
    path, value = assignment.split("=", 1)
    keys = path.strip().split(".")
    try:
        parsed = yaml.load(value, Loader=StrictLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {assignment!r}: the value is not valid YAML ({e})") from None
    node: Any = raw
    try:
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
        if isinstance(node, list):
            node[int(keys[-1])] = parsed
        elif isinstance(node, dict):
            node[keys[-1]] = parsed
        else:
            raise TypeError
    except (ValueError, IndexError, TypeError, AttributeError):
        raise ConfigError(f"override {assignment!r}: {path} does not name a field of the config") from None


def _format_error(e: ValidationError, source: str) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{loc}: {err['msg']}")
    return f"{source}: invalid config — " + "; ".join(parts)


def parse_config(raw: Any, source: str = "config", overrides: list[str] | None = None) -> ExperimentConfig:
    """Validate a raw mapping (after overrides) into the config model its ``kind`` names."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    raw = dict(raw)
    for o in overrides or []:
        apply_override(raw, o)
    kind = raw.get("kind")
    if kind is None:
        raise ConfigError(f"{source}: kind: missing; known kinds: {', '.join(known_kinds())}")
    if kind not in known_kinds():
        raise ConfigError(f"{source}: kind: unknown experiment kind {kind!r}; known: {', '.join(known_kinds())}")
    try:
        cfg = get_kind(kind).Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_error(e, source)) from None
    check_dtype_range(cfg, source)
    return cfg


def _numbers(value: Any, path: str) -> Iterator[tuple[str, float]]:
    """Every float in a dumped config, with its field path (``conditions.strengths.0``)."""
    if isinstance(value, float):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{path}.{i}" if path else str(i))


def check_dtype_range(cfg: ExperimentConfig, source: str = "config") -> None:
    """Refuse a config holding a number larger in magnitude than the narrowest dtype its models
    compute in can represent (``strengths: [1e40]``; ``70000`` for a float16 model).

    A model without an explicit dtype (``auto``) counts as bfloat16, what ``auto`` picks on a GPU
    or a bf16-capable CPU, so the answer does not depend on the machine the config is checked on.
    """
    import torch

    from steerlab.models.loading import pick_dtype

    try:
        dtypes = {
            m.name: torch.bfloat16 if m.dtype in (None, "auto") else pick_dtype(m.dtype, "cpu") for m in cfg.models
        }
    except SteerlabError as e:
        raise ConfigError(f"{source}: invalid config — models: {e}") from None
    model, dtype = min(dtypes.items(), key=lambda kv: float(torch.finfo(kv[1]).max))
    largest = float(torch.finfo(dtype).max)
    for path, x in _numbers(cfg.model_dump(mode="json"), ""):
        if abs(x) > largest:
            name = str(dtype).removeprefix("torch.")
            raise ConfigError(
                f"{source}: invalid config — {path}: {x:g} is outside the range of {name} "
                f"(largest finite value {largest:.3g}), the dtype model {model!r} computes in"
            )


def load_config(path: str | os.PathLike[str], overrides: list[str] | None = None) -> ExperimentConfig:
    """Read and validate a YAML config file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=StrictLoader)
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save the config as UTF-8") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return parse_config(raw, str(path), overrides)
