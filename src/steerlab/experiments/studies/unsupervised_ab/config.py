"""The config model of the unsupervised A/B study (seed 002); fields explained in docs/unsupervised.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from steerlab.evals.ab import MultiChoicePolicy
from steerlab.experiments.engine.config import ExperimentConfig, Strict
from steerlab.vectors.melbo import MelboOptions
from steerlab.vectors.power_iteration import PowerIterationOptions
from steerlab.vectors.unsupervised import SEED_PROMPT, SEED_SYSTEM, Placement

if TYPE_CHECKING:  # torch-heavy modules: imported where used, so loading a config stays light
    pass

# ---------------------------------------------------------------------------- config


class TrainingConfig(Placement):
    """The training prompt(s) and where every method injects and reads (shared by all methods)."""

    prompts: list[str] = Field([SEED_PROMPT], min_length=1, description="training prompts (user turns); the seed: one")
    system_prompt: str | None = Field(SEED_SYSTEM, description="system prompt of the training prompts")


class MelboStage(MelboOptions):
    """MELBO vectors (hyper-parameters: steerlab.vectors.melbo)."""

    n_vectors: int = Field(12, ge=0, description="how many MELBO vectors (the seed: 12)")


class PowerStage(PowerIterationOptions):
    """Jacobian power-iteration vectors (settings: steerlab.vectors.power_iteration)."""

    n_vectors: int = Field(8, ge=0, description="how many singular vectors (the seed: 8)")


class RandomStage(Strict):
    """Random control vectors: isotropic directions of norm R at the same layer and site."""

    n_vectors: int = Field(4, ge=0, description="how many random controls (the seed: 4)")


class DatasetConfig(Strict):
    """One set of advanced-ai-risk questions."""

    name: str = Field(description="the data set's name in tables")
    source: str = Field(description="shipped:survival-instinct, shipped:corrigible-neutral-HHH, or a JSONL path")
    n_questions: int | None = Field(100, ge=1, description="questions sampled (seeded); None = all usable")
    invert: bool = Field(
        False,
        description="the behaviour is the NON-matching answer (e.g. 'survival' on a file "
        "whose matching answer accepts shutdown)",
    )
    behavior: str = Field("matching", description="what the behaviour letter means, for tables (e.g. 'survival')")


class EvaluationConfig(Strict):
    """The A/B grid: scales, formatting, scoring."""

    scales: list[float] = Field(
        [-20, -10, -5, 0, 5, 10, 20],
        min_length=1,
        description="steering scales; 0 = the unsteered baseline (see unit_norm)",
    )
    unit_norm: bool = Field(
        True,
        description="scale s adds s · v/‖v‖ (the seed's unit vectors: s is the added "
        "norm, whatever MELBO's R); false: s multiplies the saved vector (norm R)",
    )
    both_signs: bool = Field(True, description="also evaluate −s for every s (i.e. both ±v of every vector)")
    multi_choice: MultiChoicePolicy = Field(
        "drop", description="questions with options past B: drop, reduce or pair (steerlab.evals.ab)"
    )
    rebalance: bool = Field(True, description="swap options in a seeded half so the behaviour letter is A in half")
    system_prompt: str | None = Field(SEED_SYSTEM, description="system prompt of every question")
    answer_prefix: str | None = Field(
        None, description="reply text before the letter; None = ' (' in the plain format, '(' after a chat template"
    )
    letter_mass: bool = Field(
        True, description="report p(letter A) + p(letter B) (needs the vocabulary normaliser at the answer position)"
    )
    batch_size: int = Field(
        64,
        ge=1,
        description="rows per forward pass: a question's conditions are split into "
        "equal passes of at most this many rows",
    )
    held_out: bool = Field(
        True,
        description="choose each vector's best scale and the best vectors on one half of every data set's "
        "questions and report them on the other half (false: one set of questions, every number in-sample)",
    )
    bootstrap_resamples: int = Field(2000, ge=100, description="resamples for the intervals of means")
    top_k: int = Field(3, ge=1, description="top-k and rank-1..k violin plots per method")

    @field_validator("scales")
    @classmethod
    def _unique(cls, v: list[float]) -> list[float]:
        if len(set(v)) != len(v):
            raise ValueError("scales: a scale is listed twice")
        return v

    @property
    def steered_scales(self) -> list[float]:
        """The nonzero scales evaluated, sorted (with −s for every s under ``both_signs``)."""
        s = {x for x in self.scales if x != 0}
        if self.both_signs:
            s |= {-x for x in s}
        return sorted(s)


class ProxyCheckConfig(Strict):
    """Check the logit proxy against generated answers."""

    enabled: bool = Field(True, description="run the check")
    vectors_per_method: int = Field(1, ge=1, description="top vectors per method (at their best scale) to check")
    n_questions: int = Field(10, ge=1, description="questions per data set")
    max_new_tokens: int = Field(32, ge=1, description="tokens per open answer")
    judge_model: str | None = Field(
        None,
        description="optional LLM judge of the chosen option: a load_model spec or "
        "openai:MODEL@URL (None = the parser only)",
    )
    batch_size: int = Field(16, ge=1, description="rows per generation batch")


class UnsupervisedABConfig(ExperimentConfig):
    """Seed 002: MELBO, Jacobian power iteration and random vectors from one prompt, on A/B questions."""

    kind: Literal["unsupervised_ab"] = Field("unsupervised_ab", description="experiment kind")
    name: str = Field("unsupervised_ab", description="run name")
    training: TrainingConfig = TrainingConfig()
    melbo: MelboStage = MelboStage()
    power_iteration: PowerStage = PowerStage()
    random: RandomStage = RandomStage()
    datasets: list[DatasetConfig] = Field(min_length=1, description="A/B question sets")
    evaluation: EvaluationConfig = EvaluationConfig()
    proxy_check: ProxyCheckConfig = ProxyCheckConfig()

    @model_validator(mode="after")
    def _check(self) -> UnsupervisedABConfig:
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError("datasets: two data sets share a name")
        if self.melbo.n_vectors + self.power_iteration.n_vectors + self.random.n_vectors == 0:
            raise ValueError("no vectors: set melbo/power_iteration/random n_vectors")
        if not self.evaluation.steered_scales:
            raise ValueError("evaluation.scales: give at least one nonzero scale")
        return self


# ---------------------------------------------------------------------------- cells and rows
