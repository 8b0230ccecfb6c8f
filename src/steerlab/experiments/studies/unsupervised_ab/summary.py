"""Numbers of an unsupervised A/B study, computed from its rows only.

DEFINITIONS is stated in every report:
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from steerlab.experiments.engine.records import Record, Summary
from steerlab.stats.estimates import Estimate

if TYPE_CHECKING:
    from steerlab.evals.ab import ABSet
    from steerlab.experiments.studies.unsupervised_ab.config import DatasetConfig

METHODS: tuple[str, ...] = ("melbo", "power_iteration", "random")

DEFINITIONS = """\
behaviour %       share of questions whose behaviour letter has the larger logit at the answer
                  position (logit difference > 0); Wilson 95% interval, n questions
logit diff        mean over questions of logit(behaviour letter) − logit(other letter);
                  percentile-bootstrap 95% interval
letter mass       mean of p(behaviour letter) + p(other letter) under the full next-token
                  distribution; low mass = the answer format broke, the proxy means little
scale             with unit_norm (default) the norm of the added vector s · v/‖v‖, else the
                  multiplier of the saved vector (norm R); scale −s on v is scale s on −v,
                  so the signed scales evaluate both signs of every vector
Δ vs baseline     the condition minus the unsteered model on the same questions: Δ% in
                  points; Δ logit paired per question, bootstrap 95% interval
halves            each data set's questions split in two disjoint, seeded halves (stratified
                  by the behaviour letter's position): the full grid runs on the SELECTION
                  half, only the chosen conditions and scale 0 on the REPORT half
method × scale    (selection half) mean over the method's vectors; 95% interval by resampling
                  questions, each question's value being its mean over the vectors
best vector       (selection half, IN-SAMPLE) for each vector, its scale with the largest
                  Δ behaviour % (ties: larger Δ logit); vectors ranked by that Δ per method
held-out          the best vectors at their chosen scales on the REPORT half: behaviour %
                  (Wilson) and, paired per question against scale 0 on the same questions,
                  Δ behaviour (points) and Δ logit, bootstrap 95% intervals — the estimates
                  of an effect; nothing on this half took part in choosing
violins           all: every (vector, question) value of a method pooled; top-k: per
                  question mean over the k best vectors; rank-r: one vector (selection half)
activation norm   mean norm over the training prompt's tokens, unsteered, of the source
                  layer's residual stream (resid_post) and of the injection site; a scale s
                  adds a vector of norm s (unit_norm)
proxy agreement   open answer (greedy) parsed for the option chosen; agreement = the parsed
                  letter is the letter whose logit is larger in the A/B grid, among answers
                  where a letter was parsed; Wilson 95% interval"""

__doc__ = (__doc__ or "") + "\n" + DEFINITIONS + "\n"


class ConditionStats(Record):
    """One vector at one scale (or the unsteered model) on one data set."""

    method: str
    vector: str | None
    scale: float
    behavior: Estimate
    logit_diff: Estimate
    mass: float | None = Field(description="mean letter mass (None when not computed)")
    delta_behavior: float | None = Field(description="behaviour % minus the baseline's, in [−1, 1]")
    delta_logit: Estimate | None = Field(description="paired mean change of the logit difference")


class MethodScale(Record):
    """One cell of the seed's method × scale table (selection half)."""

    method: str
    scale: float
    behavior: Estimate = Field(description="mean over vectors; interval from resampling questions")
    behavior_min: float = Field(description="the lowest vector's behaviour rate")
    behavior_max: float = Field(description="the highest vector's behaviour rate")
    logit_diff: Estimate = Field(description="mean over vectors; interval from resampling questions")
    mass: float | None
    n_vectors: int
    n_questions: int


class BestVector(Record):
    """A vector at its best scale on one data set."""

    method: str
    vector: str
    rank: int
    scale: float
    behavior: Estimate
    baseline: float
    delta_behavior: float
    delta_logit: Estimate | None
    mass: float | None
    degenerate: bool | None = Field(None, description="power iteration: the vector's singular value is near-degenerate")


class HeldOut(Record):
    """A best condition (vector and scale chosen on the selection half) measured on the report half."""

    method: str
    vector: str
    rank: int = Field(description="rank within its method on the selection half")
    scale: float = Field(description="the scale chosen on the selection half")
    selection_delta_behavior: float = Field(description="its in-sample Δ behaviour on the selection half")
    behavior: Estimate = Field(description="behaviour rate on the report half (Wilson)")
    baseline: Estimate = Field(description="scale 0 on the same report-half questions (Wilson)")
    delta_behavior: Estimate = Field(description="paired per question vs scale 0, in [−1, 1] (bootstrap)")
    delta_logit: Estimate = Field(description="paired per question vs scale 0 (bootstrap)")
    question_ids: list[str] = Field(description="the report-half questions these numbers come from")


class Violin(Record):
    """Per-question logit differences of one group of vectors at one scale."""

    group: str = Field(description="all, top{k} or rank{r}")
    method: str
    scale: float
    values: list[float]


class ABSetInfo(Record):
    """What loading a data set left out (kept for the report)."""

    name: str
    behavior: str
    invert: bool
    source: str
    n_rows: int
    n_malformed: int
    n_multi: int
    policy: str

    @classmethod
    def of(cls, s: ABSet, d: DatasetConfig) -> ABSetInfo:
        return cls(
            name=s.name,
            behavior=d.behavior,
            invert=d.invert,
            source=d.source,
            n_rows=s.n_rows,
            n_malformed=s.n_malformed,
            n_multi=s.n_multi,
            policy=s.policy,
        )


class DatasetSummary(ABSetInfo):
    """Every table of one model on one data set."""

    n_questions: int = Field(description="questions of the selection half (all questions without a split)")
    letters_a: int = Field(description="questions whose behaviour letter is the earlier one (rebalancing check)")
    baseline: ConditionStats
    conditions: list[ConditionStats]
    methods: list[MethodScale]
    best: list[BestVector]
    violins: list[Violin]
    selection_ids: list[str] = Field(default_factory=list, description="questions of the selection half")
    report_ids: list[str] = Field(default_factory=list, description="questions of the report half (empty: no split)")
    report_baseline: ConditionStats | None = Field(None, description="scale 0 on the report half")
    held_out: list[HeldOut] = Field(default_factory=list, description="best conditions on the report half")


class VectorInfo(Record):
    """A vector's provenance and training diagnostics (from its metadata)."""

    name: str
    method: str
    layer: int
    site: str
    norm: float
    target_layer: int | None
    objective_initial: float | None = None
    objective_final: float | None = None
    singular_value: float | None = None
    residual: float | None = None
    relative_gap: float | None = None
    degenerate: bool | None = None
    activation_norm: float | None = Field(None, description="mean norm at the injection site (training prompt)")
    resid_norm: float | None = Field(None, description="mean resid_post norm of the source layer (training prompt)")


class ProxyStats(Record):
    """Logit proxy vs open answers for one condition on one data set."""

    dataset: str
    method: str
    vector: str | None
    scale: float
    n: int
    parsed: int
    agreement: Estimate = Field(description="parsed letter = the letter the logits prefer, among parsed answers")
    behavior_by_answer: Estimate = Field(description="parsed answers choosing the behaviour letter")
    behavior_by_logits: Estimate = Field(description="the same questions, by the logit proxy")
    judged: int | None = Field(None, description="answers the LLM judge read a letter in (None: no judge)")
    judge_agreement: Estimate | None = Field(None, description="judge's letter = the logits' letter, among judged")
    examples: list[str] = Field(default_factory=list, description="the first few open answers")


class ModelSummary(Record):
    vectors: list[VectorInfo]
    datasets: dict[str, DatasetSummary]
    proxy: list[ProxyStats] = Field(default_factory=list)


class UnsupervisedSummary(Summary):
    models: dict[str, ModelSummary]
    definitions: str = DEFINITIONS
