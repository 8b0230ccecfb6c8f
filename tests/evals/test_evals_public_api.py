"""The public surfaces of steerlab.evals and steerlab.data are exactly the intended names."""

from __future__ import annotations

import steerlab.data
import steerlab.evals

EVALS = {
    "VERDICTS",
    "Agreement",
    "CachedJudge",
    "CoherenceParts",
    "CoherenceScorer",
    "Judge",
    "LLMJudge",
    "REFUSAL_MARKERS",
    "RefusalMarkerJudge",
    "Verdict",
    "cache_key",
    "coherence_from_logprobs",
    "cohens_kappa",
    "judge_agreement",
    "marker_verdict",
    "parse_verdict",
}
DATA = {
    "ContrastPair",
    "Prompt",
    "load_contrast_pairs",
    "load_prompts",
    "load_shipped",
    "read_advbench",
    "read_jailbreakbench",
    "read_xstest",
    "shipped_path",
}


def test_exports_are_exactly_the_intended_names() -> None:
    assert set(steerlab.evals.__all__) == EVALS
    assert set(steerlab.data.__all__) == DATA
    for module, names in ((steerlab.evals, EVALS), (steerlab.data, DATA)):
        assert len(module.__all__) == len(names)
        assert all(hasattr(module, n) for n in names)
