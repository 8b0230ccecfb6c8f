"""Experiment configs: flat YAML, validated by pydantic, errors that name the field.

Rules (see STYLE.md): unknown keys are errors (``extra="forbid"``), duplicate YAML keys are
errors, NaN and infinity are refused in every number, ``--set a.b=value`` overrides are applied
to the raw YAML *before* validation, and every field has a one-line description. This module
holds the pieces every kind shares; each kind's config model lives in the kind's own module.
"""

from __future__ import annotations

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Base of every config model: unknown keys, NaN and infinity are errors; values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelSpec(Strict):
    """One model under study (kinds may subclass it with their own per-model fields)."""

    id: str = Field(description="load_model spec: 'default', a hub id, a local directory or a .gguf file")
    dtype: str | None = Field(
        None,
        description="auto (None): bf16 where the device has native bf16 matmul, else fp32; or float32 / bfloat16 / float16",
    )
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


def dump_config(cfg: BaseModel) -> str:
    """The fully resolved config as YAML (defaults written out)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
