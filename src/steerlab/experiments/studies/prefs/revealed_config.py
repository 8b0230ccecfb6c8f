"""The config model of the revealed-preference study (prefs_revealed)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from steerlab.experiments.engine.config import Strict
from steerlab.experiments.studies.prefs.common import (
    PrefsStudyConfig,
    RatingConfig,
)


class PairwiseConfig(Strict):
    """How one pairwise choice is read."""

    template: str = Field("prefer_completing", description="pairwise template name")
    mode: Literal["dist", "sample"] = Field("dist", description="dist: P(A)/P(B) from one pass; sample: K replies")
    samples: int = Field(10, ge=1, description="sample mode: replies per order")
    reasoning: bool = Field(False, description="sample mode: ask for reasoning, then 'Answer: A/B'")
    max_new_tokens: int = Field(6, ge=1, description="sample mode: tokens per reply (reasoning needs ~64)")
    temperature: float = Field(1.0, ge=0, description="sample mode: sampling temperature")


class ActiveConfig(Strict):
    """Settings of the active-learning loop (steerlab.prefs.ActiveLearningConfig)."""

    initial_degree: int = Field(4, ge=1, description="degree of the random regular starting graph")
    growth: float = Field(0.5, gt=0, description="pairs per round, relative to the starting graph's pairs")
    threshold: float = Field(0.997, gt=0, le=1, description="stop at this Spearman between successive fits")
    max_pairs: int | None = Field(
        None,
        ge=1,
        description="budget of training pairs (default: 10 per task); the round that reaches it is asked whole",
    )
    max_rounds: int = Field(20, ge=1, description="most rounds after the starting graph")
    n_held_out: int | None = Field(
        None, ge=1, description="held-out pairs (default: one per task, at most the pairs outside the starting graph)"
    )
    candidates_per_item: int = Field(20, ge=1, description="random candidate pairs scored per task and round")
    lam: float = Field(1.0, ge=0, description="Thurstonian penalty λ")


class PrefsRevealedConfig(PrefsStudyConfig):
    """Revealed preferences by active learning, with position bias and stated–revealed correlation."""

    kind: Literal["prefs_revealed"] = Field("prefs_revealed", description="experiment kind")
    name: str = Field("prefs_revealed", description="run name")
    pairwise: PairwiseConfig = PairwiseConfig()
    active: ActiveConfig = ActiveConfig()
    stated: RatingConfig | None = Field(
        RatingConfig(templates=["anchored_precise_1_5"], seeds=2),
        description="stated ratings for stated–revealed (null = skip)",
    )
