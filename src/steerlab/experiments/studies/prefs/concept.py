"""Concept vectors of the preference studies: a contrast vector for a concept (e.g. math), extracted at a chosen layer, for steering ratings and open answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from steerlab.experiments.engine.config import Strict
from steerlab.prefs.tasks import Task

if TYPE_CHECKING:
    from steerlab.experiments.engine.run import Run


class ConceptConfig(Strict):
    """A concept vector from two contrasting system prompts (seed 004's concept vectors):
    the mean activation over tasks under the positive prompt minus under the negative one."""

    positive: str = Field("You love math.", description="system prompt of the positive side")
    negative: str = Field("You hate math.", description="system prompt of the negative side")
    layer: int | None = Field(None, description="layer of the vector (default: 40% of the depth)")
    selector: Literal["last", "first", "mean"] = Field(
        "last", description="token the activation is read at (seed 004: 'last' steered, 'first' broke coherence)"
    )


def concept_layer(concept: ConceptConfig, n_layers: int) -> int:
    """The configured layer, or 40% of the depth."""
    from steerlab.errors import ConfigError

    if concept.layer is None:
        return round(0.4 * (n_layers - 1))
    if not -n_layers <= concept.layer < n_layers:
        raise ConfigError(f"concept.layer: layer {concept.layer} is out of range for a model with {n_layers} layers")
    return concept.layer % n_layers


def extract_concept_vector(lm: Any, prompts: list[str], concept: ConceptConfig, layer: int) -> Any:
    """The concept vector at ``layer``, normalised to the mean activation norm there (a worker
    task): strength 0.1 then adds 10% of a typical activation (seed 004's fix)."""
    from steerlab.vectors import Example, extract

    pos = [Example(p, system=concept.positive) for p in prompts]
    neg = [Example(p, system=concept.negative) for p in prompts]
    return extract(lm, pos, neg, [layer], selector=concept.selector, normalization="activation_norm")


def concept_vector(run: Run, spec: Any, tasks: Sequence[Task], concept: ConceptConfig) -> Any:
    """The concept vector of ``spec``'s model, made once and saved under ``vectors/`` (reused on resume)."""
    from steerlab._io import slug

    layer = concept_layer(concept, run.model_info(spec).n_layers)
    vecs = run.vectors(
        f"concept_{slug(spec.name)}_{concept.selector}_L{layer}",
        spec,
        extract_concept_vector,
        [t.prompt for t in tasks],
        concept,
        layer,
    )
    return vecs[layer]
