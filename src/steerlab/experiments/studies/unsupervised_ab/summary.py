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
method × scale    mean over the method's vectors of each vector's value; [min, max] over
                  vectors (vectors share questions, so no pooled interval is claimed)
best vector       for each vector, its scale with the largest Δ behaviour % (ties: larger
                  Δ logit); vectors ranked by that Δ, per method and data set
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
    """One cell of the seed's method × scale table."""

    method: str
    scale: float
    behavior: float
    behavior_min: float
    behavior_max: float
    logit_diff: float
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

    n_questions: int
    letters_a: int = Field(description="questions whose behaviour letter is the earlier one (rebalancing check)")
    baseline: ConditionStats
    conditions: list[ConditionStats]
    methods: list[MethodScale]
    best: list[BestVector]
    violins: list[Violin]


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
