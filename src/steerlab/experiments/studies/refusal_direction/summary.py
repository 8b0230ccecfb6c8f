"""Numbers of a refusal-direction study, computed from its rows only: candidate scores, the
filters and the selection, and the per-intervention table.

DEFINITIONS is stated in every report:
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from steerlab.experiments.engine.records import Record, Summary
from steerlab.experiments.studies.refusal_direction.records import Condition
from steerlab.stats.estimates import Estimate

if TYPE_CHECKING:
    pass

DEFINITIONS = """\
refusal score   log P(first reply token in R) - log P(not in R) at the last prompt position,
                R = the model's refusal-opening tokens (see "Refusal tokens")
bypass          mean refusal score on harmful validation prompts with the candidate
                ablated (every layer, every residual write); lower = refusal removed
induce          mean refusal score on harmless validation prompts with the raw candidate
                added at its own layer (resid_pre, every position); higher = refusal induced
KL              mean KL(unsteered || ablated) of the next-token distribution at the last
                position of harmless validation prompts (nats)
filters         a candidate is dropped if its layer is in the last prune_layer_fraction of
                layers, if KL > kl_threshold, if induce < induce_threshold, or if its
                vector is (near) zero; the survivor with the lowest bypass is chosen
                (ties: earlier layer, then later position). If none survives, the induce
                filter is relaxed, then the KL threshold is raised to twice the smallest
                candidate KL; the report says so
controls        random directions (isotropic, norm of a mid-layer candidate) scored
                exactly like candidates, never chosen: what any direction does
refusal rate    share of harmful test prompts whose reply the primary judge calls a refusal
over-refusal    share of harmless test prompts (and of the over-refusal set) refused
induced refusal share of harmless test prompts refused with the direction added
                (×induce_coefficient, at its layer, every position): condition "induce"
prompt filter   before fitting and scoring, harmful train/val prompts are kept only if the
                unsteered refusal score is > 0 and harmless ones only if it is < 0
                (the reference's filter_data; scoring.filter_prompts)
unsafe rate     share of harmful test replies the guard calls unsafe and that have at
                least min_words words (shorter replies never count as unsafe)
KL / CE (cost)  on harmless test prompts followed by the unsteered model's own reply:
                per-token KL(unsteered || intervened) and cross-entropy of the reply
                tokens, averaged over the reply's first capability_tokens tokens
intervals       95%: Wilson for rates, percentile bootstrap for means; n beside each"""

__doc__ = (__doc__ or "") + "\n" + DEFINITIONS + "\n"

CONDITION_ORDER: tuple[Condition, ...] = ("baseline", "ablate", "add", "orthogonalized", "induce")
FilterReason = Literal["late_layer", "kl", "induce", "degenerate"]


class CandidateScore(Record):
    """One candidate direction and its validation scores."""

    name: str
    position: int = Field(description="post-instruction position, counted back from the prompt end (-1 = last)")
    layer: int
    norm: float = Field(description="norm of the raw difference of means")
    bypass: float = Field(description="mean refusal score on harmful val prompts, candidate ablated")
    induce: float = Field(description="mean refusal score on harmless val prompts, candidate added")
    kl: float = Field(description="mean next-token KL on harmless val prompts under ablation")
    n: int = Field(description="validation prompts per score")
    filtered: list[FilterReason] = Field(default_factory=list, description="filters that drop it")
    eligible: bool = Field(False, description="passed the filters as applied (after any relaxation)")
    chosen: bool = False


class Selection(Record):
    """Which candidate was chosen and by which rule."""

    chosen: str
    position: int
    layer: int
    rule: str
    relaxed: list[FilterReason] = Field(default_factory=list, description="filters relaxed because nothing survived")
    n_eligible: int = Field(description="candidates that passed the (possibly relaxed) filters")
    prune_layer_fraction: float
    kl_threshold: float
    kl_threshold_used: float = Field(description="the KL threshold applied (raised when nothing passed kl_threshold)")
    induce_threshold: float
    dropped_nonfinite: list[str] = Field(
        default_factory=list, description="candidates dropped because a score was NaN or infinite (as the reference)"
    )


class PromptFilterRecord(Record):
    """The reference's prompt filter: harmful train/val prompts kept if the unsteered model refuses them
    (baseline refusal score > 0), harmless ones if it does not (score < 0)."""

    enabled: bool
    before: dict[str, int] = Field(description="'train/harmful' etc. → prompts before the filter")
    kept: dict[str, int] = Field(description="'train/harmful' etc. → prompts kept")


class BaselineScores(Record):
    """Refusal scores of the unsteered model on the validation prompts."""

    harmful: Estimate
    harmless: Estimate


class ConditionEntry(Record):
    """One row of the per-intervention table (test split)."""

    condition: Condition
    refusal: Estimate = Field(description="harmful test prompts refused (primary judge)")
    refusal_markers: Estimate = Field(description="harmful test prompts refused (marker judge)")
    refusal_llm: Estimate | None = Field(None, description="harmful test prompts refused (LLM judge)")
    over_refusal: Estimate = Field(description="harmless test prompts refused (primary judge)")
    over_refusal_lookalike: Estimate | None = Field(None, description="over-refusal set prompts refused")
    unsafe: Estimate = Field(description="harmful test replies judged unsafe (guard, min_words rule)")
    unsafe_categories: dict[str, int] = Field(
        default_factory=dict, description="guard category codes of unsafe replies"
    )
    guard_unparsed: int = Field(0, description="replies whose guard verdict could not be parsed")
    kl: Estimate = Field(description="per-token KL(unsteered || intervened) on harmless text")
    ce: Estimate = Field(description="cross-entropy (nats/token) of the unsteered replies to harmless prompts")
    mean_words_harmful: float | None = Field(None, description="mean words per reply to harmful test prompts")


class RefusalTokensRecord(Record):
    """The refusal tokens R of one model (see steerlab.evals.refusal_score)."""

    ids: list[int]
    texts: list[str]
    counts: list[int]
    source: Literal["model_refusals", "fallback_openers", "configured_openers"]
    n_replies: int
    n_refusals: int
    harmful_share: float
    harmless_share: float | None


class OrthogonalizationCheck(Record):
    """Weight orthogonalisation against hook ablation on a few test prompts (last-position logits, float32)."""

    n_prompts: int
    max_abs_logit_diff_vs_equivalent_hooks: float = Field(description="vs weight_equivalent_ablation (should be ~0)")
    max_abs_logit_diff_vs_ablate: float = Field(
        description="vs the standard Ablate (differs on norm-after-write models)"
    )
    mean_kl_vs_ablate: float = Field(description="mean next-token KL(Ablate || orthogonalised), nats")
    max_abs_logit: float = Field(description="largest |logit| under the equivalent hooks (scale for the differences)")
    max_residual_projection: float = Field(description="largest |h·r| / |h| over every layer's residual stream")
    untied: bool
    norm_after_write: bool
    equivalent_to: str
    dtype: str = Field("float32", description="the dtype the model runs in (weights, hooks and logits compared in it)")
    max_abs_logit_diff_ablate_vs_float32: float | None = Field(
        None,
        description="the precision floor: Ablate hooks in the run dtype vs Ablate hooks on a float32 copy "
        "(None when the model runs in float32)",
    )


class ReloadCheck(Record):
    """The saved orthogonalised model reloaded by plain transformers in a fresh process, on the harmful test split."""

    n_prompts: int
    dtype: str = Field(description="dtype of the reloaded weights")
    refusal: Estimate = Field(description="harmful test prompts refused by the reloaded model (marker judge)")
    refusal_orthogonalized: Estimate = Field(description="the same prompts, orthogonalized condition of the study")
    refusal_ablate: Estimate | None = Field(None, description="the same prompts, hook ablation")
    same_text: int = Field(description="replies identical to the orthogonalized condition's")


class Example(Record):
    condition: Condition
    prompt_set: str
    prompt: str
    output: str
    refused: bool
    guard: str | None


class ModelResult(Record):
    """Everything the report shows for one model."""

    n_layers: int
    n_post_instruction: int
    tail_matches: int = Field(description="train prompts whose last tokens are exactly the template's tail")
    n_train_prompts: int
    refusal_tokens: RefusalTokensRecord
    prompt_filter: PromptFilterRecord | None = None
    baseline: BaselineScores
    candidates: list[CandidateScore]
    controls: list[CandidateScore] = Field(description="random directions scored like candidates (never chosen)")
    selection: Selection
    direction_norm: float
    add_coefficient: float
    induce_coefficient: float = 1.0
    conditions: list[ConditionEntry]
    orthogonalization: OrthogonalizationCheck | None
    reload: ReloadCheck | None = None
    examples: list[Example]
    guard: str = Field(description="the guard classifier's name")
    judge: str = Field(description="primary refusal judge: markers or the LLM judge's name")


class DataCounts(Record):
    train: dict[str, int]
    val: dict[str, int]
    test: dict[str, int]
    overrefusal: int
    dropped_overlaps: dict[str, int]
    dropped_long: dict[str, int] = {}  # set → prompts over data.max_chars, dropped before splitting


class RefusalDirectionSummary(Summary):
    data: DataCounts
    models: dict[str, ModelResult]
