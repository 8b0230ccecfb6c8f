"""Worker tasks of the unsupervised A/B study: MELBO, power-iteration and random vectors from the training prompt (module level, so they can be sent to a Ray actor)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from steerlab.experiments.studies.unsupervised_ab.config import (
    MelboStage,
    PowerStage,
    TrainingConfig,
)
from steerlab.vectors.unsupervised import Placement

if TYPE_CHECKING:  # torch-heavy modules: imported where used, so loading a config stays light
    from steerlab.models.hf import LanguageModel
    from steerlab.vectors.vector import VectorSet


def make_melbo(lm: LanguageModel, t: TrainingConfig, m: MelboStage, seed: int) -> VectorSet:
    """MELBO vectors (a worker task)."""
    from steerlab.progress import progress_bar
    from steerlab.vectors.melbo import MelboSettings, train_melbo

    s = MelboSettings(**t.model_dump(include=set(Placement.model_fields)), **m.model_dump(exclude={"n_vectors"}))
    with progress_bar(f"MELBO: {m.n_vectors} vectors × {m.steps} steps") as bar:
        return train_melbo(lm, t.prompts, m.n_vectors, s, system=t.system_prompt, seed=seed, progress=bar).vectors


def make_power(lm: LanguageModel, t: TrainingConfig, p: PowerStage, seed: int) -> VectorSet:
    """Power-iteration vectors (a worker task)."""
    from steerlab.progress import progress_bar
    from steerlab.vectors.power_iteration import PowerIterationSettings, jacobian_power_iteration

    s = PowerIterationSettings(
        **t.model_dump(include=set(Placement.model_fields)), **p.model_dump(exclude={"n_vectors"})
    )
    with progress_bar(f"power iteration: {p.n_vectors} vectors") as bar:
        return jacobian_power_iteration(
            lm, t.prompts, p.n_vectors, s, system=t.system_prompt, seed=seed, progress=bar
        ).vectors


def make_random(lm: LanguageModel, t: TrainingConfig, n: int, seed: int) -> VectorSet:
    """Random controls of norm R at the training layer and site (a worker task)."""
    import torch

    from steerlab.vectors.unsupervised import site_norm, training_batch, vector_meta, vector_seed
    from steerlab.vectors.vector import SteeringVector, VectorSet

    source, target = t.layers(lm.n_layers)
    batch = training_batch(lm, t.prompts, t.system_prompt)
    act_norm, resid_norm = site_norm(lm, batch, source, t.site), site_norm(lm, batch, source, "resid_post")
    out = []
    for i in range(n):
        v = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(vector_seed(seed, "random", i)))
        meta = vector_meta(
            lm,
            name=f"random.{i}",
            method="random",
            layer=source,
            site=t.site,
            radius=t.radius,
            activation_norm=act_norm,
            resid_norm=resid_norm,
            prompts=t.prompts,
            system=t.system_prompt,
            extra={"index": i, "seed": seed, "source_layer": source, "target_layer": target},
        )
        out.append(SteeringVector(v / v.norm() * t.radius, meta))
    return VectorSet(out)
