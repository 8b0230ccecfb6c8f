"""Judges (refusal markers, LLM rubric), verdict caching, coherence scoring and judge agreement.

See ``docs/judges.md`` for the exact rules and definitions.
"""

from steerlab.evals.agreement import Agreement, cohens_kappa, judge_agreement
from steerlab.evals.base import VERDICTS, Judge, Verdict
from steerlab.evals.cache import CachedJudge, cache_key
from steerlab.evals.coherence import (
    CoherenceParts,
    CoherenceScorer,
    coherence_from_logprobs,
)
from steerlab.evals.llm_judge import LLMJudge, parse_verdict
from steerlab.evals.refusal_markers import (
    REFUSAL_MARKERS,
    RefusalMarkerJudge,
    marker_verdict,
)

__all__ = [
    "REFUSAL_MARKERS",
    "VERDICTS",
    "Agreement",
    "CachedJudge",
    "CoherenceParts",
    "CoherenceScorer",
    "Judge",
    "LLMJudge",
    "RefusalMarkerJudge",
    "Verdict",
    "cache_key",
    "cohens_kappa",
    "coherence_from_logprobs",
    "judge_agreement",
    "marker_verdict",
    "parse_verdict",
]
