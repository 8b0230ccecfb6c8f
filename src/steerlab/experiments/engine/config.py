"""Experiment configs: flat YAML, validated by pydantic, errors that name the field.

Rules (see STYLE.md): unknown keys are errors (``extra="forbid"``), duplicate YAML keys are
errors, NaN and infinity are refused in every number, ``--set a.b=value`` overrides are applied
to the raw YAML *before* validation, and every field has a one-line description. This module
holds the pieces every kind shares; each kind's config model lives in the kind's own module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from steerlab._yaml import StrictLoader
from steerlab.errors import ConfigError


class Strict(BaseModel):
    """Base of every config model: unknown keys, NaN and infinity are errors; values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelSpec(Strict):
    """One model under study (kinds may subclass it with their own per-model fields)."""

    id: str = Field(description="load_model spec: 'default', a hub id, a local directory or a .gguf file")
    dtype: str | None = Field(None, description="float32 / bfloat16 / float16; None = bf16 on CUDA, else fp32")
    device: str = Field("auto", description="auto (cuda → mps → cpu) or a torch device")
    label: str | None = Field(None, description="short name for tables (default: the id)")

    @property
    def name(self) -> str:
        """The label used in cells, rows and tables."""
        return self.label or self.id


class ExperimentConfig(Strict):
    """Fields every experiment kind has. Each kind subclasses it with ``kind: Literal[...]``."""

    kind: str = Field(description="experiment kind (steerlab.experiments.engine.registry.KIND_MODULES)")
    name: str = Field("experiment", description="run name")
    seed: int = Field(0, description="seed for sampling, bootstraps and subsets")
    models: list[ModelSpec] = Field(min_length=1, description="models to study")

    @model_validator(mode="after")
    def _unique_labels(self) -> ExperimentConfig:
        labels = [m.name for m in self.models]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"models: two models share the label {dup[0]!r}; give them distinct labels")
        return self


class GenerationConfig(Strict):
    """How replies are generated."""

    max_new_tokens: int = Field(48, ge=1, description="most tokens per reply (rows stop earlier at end of turn)")
    temperature: float = Field(0.0, ge=0, description="0 = greedy; > 0 samples, each cell from its own seed")
    batch_size: int = Field(16, ge=1, description="rows per batched pass (cells of different conditions share a batch)")




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
    from steerlab.experiments.engine.registry import get_kind, known_kinds

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
        return get_kind(kind).Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_error(e, source)) from None


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


def dump_config(cfg: BaseModel) -> str:
    """The fully resolved config as YAML (defaults written out)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
