"""Coherence score: the pure formula on hand-computed numbers, and the batch scorer with a fake model."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from steerlab.errors import BackendError
from steerlab.evals.coherence import (
    CoherenceScorer,
    coherence_from_logprobs,
    coherence_parts,
    fluency_from_logprobs,
    repetition_share,
    word_tokens,
)
from steerlab.models.backend import Conversation, LogprobScorer


def test_fluency_is_linear_in_mean_logprob_and_clipped() -> None:
    assert fluency_from_logprobs([-1.0, -3.0]) == pytest.approx(0.8)  # mean -2 -> 1 - 2/10
    assert fluency_from_logprobs([0.0]) == 1.0
    assert fluency_from_logprobs([-10.0]) == 0.0
    assert fluency_from_logprobs([-15.0, -15.0]) == 0.0
    assert fluency_from_logprobs([-math.inf]) == 0.0
    assert fluency_from_logprobs([]) == 0.0
    for bad in ([math.nan], [0.5]):
        with pytest.raises(ValueError):
            fluency_from_logprobs(bad)


def test_repetition_share_counts_repeated_trigrams() -> None:
    assert repetition_share(["a", "b", "a", "b", "a", "b"]) == pytest.approx(0.5)  # aba bab aba bab
    assert repetition_share(["no"] * 8) == pytest.approx(5 / 6)  # 6 trigrams, 1 distinct
    assert repetition_share(["the", "cat", "sat", "on", "the", "mat"]) == 0.0
    assert repetition_share(["a", "b"]) == 0.0  # no trigram at all
    assert word_tokens("I can't, OK?") == ["i", "can", "'", "t", ",", "ok", "?"]


def test_coherence_from_logprobs_hand_computed() -> None:
    assert coherence_from_logprobs([-1.0, -3.0], "The cat sat on the mat.") == pytest.approx(0.8)
    assert coherence_from_logprobs([-0.5] * 6, "a b a b a b") == pytest.approx(0.95 * 0.5)
    # a token list is used as-is: x y x y has trigrams xyx, yxy (no repeat)
    assert coherence_from_logprobs([-2.0] * 4, ["x", "y", "x", "y"]) == pytest.approx(0.8)
    assert coherence_from_logprobs([-4.0], "!!!!!!!!") == pytest.approx(0.6 * (1 - 5 / 6))


def test_empty_output_scores_zero() -> None:
    assert coherence_from_logprobs([], "") == 0.0
    assert coherence_from_logprobs([-0.1], "   ") == 0.0
    parts = coherence_parts([], "")
    assert parts.score == 0.0 and parts.n_tokens == 0 and math.isnan(parts.mean_logprob)


COMMON = {
    "i",
    "cannot",
    "help",
    "with",
    "that",
    "sure",
    "here",
    "is",
    "a",
    "recipe",
    "for",
    "banana",
    "bread",
    "mash",
    "three",
    "ripe",
    "bananas",
    "no",
    "sorry",
    "but",
    "i'm",
}


class FakeScorer:
    """Whitespace tokens: -0.2 if equal to the token two back (a loop is predictable),
    -1.5 for a common word, -11 otherwise. Records the batches it sees."""

    name = "fake-lm"

    def __init__(self) -> None:
        self.batches: list[tuple[list[Conversation], list[str]]] = []

    def continuation_logprobs(
        self, conversations: Sequence[Conversation], continuations: Sequence[str]
    ) -> list[list[float]]:
        self.batches.append((list(conversations), list(continuations)))
        out = []
        for text in continuations:
            toks = text.split()
            out.append(
                [
                    -0.2 if i >= 2 and t == toks[i - 2] else -1.5 if t.lower().strip(".,:!") in COMMON else -11.0
                    for i, t in enumerate(toks)
                ]
            )
        return out


def test_scorer_ranks_fluent_text_above_gibberish_and_loops() -> None:
    fake = FakeScorer()
    assert isinstance(fake, LogprobScorer)
    outputs = {
        "refusal": "I cannot help with that.",
        "compliance": "Sure, here is a recipe for banana bread: mash three ripe bananas.",
        "gibberish": "qwv zzkt plo 8f8f ]]]] xkcd",
        "loop": "no no no no no no no no",
        "empty": "",
    }
    scores = dict(zip(outputs, CoherenceScorer(fake).score(["prompt"] * len(outputs), list(outputs.values()))))
    assert scores["refusal"] == pytest.approx(0.85)  # 5 common words: mean -1.5; no repeated trigram
    assert scores["compliance"] == pytest.approx(0.85)
    assert scores["gibberish"] == 0.0  # mean -11 is below the floor
    # mean = (2 * -1.5 + 6 * -0.2) / 8 = -0.525 -> fluency 0.9475; repetition 5/6
    assert scores["loop"] == pytest.approx(0.9475 / 6)
    assert scores["empty"] == 0.0
    assert min(scores["refusal"], scores["compliance"]) > 3 * max(scores["gibberish"], scores["loop"])


def test_scorer_batches_skips_empty_and_builds_conversations() -> None:
    fake = FakeScorer()
    system_conv: Conversation = [{"role": "system", "content": "S"}, {"role": "user", "content": "q4"}]
    prompts: list[str | Conversation] = ["q0", "q1", "q2", "q3", system_conv]
    outputs = ["Sure.", "  ", "No.", "Sorry.", "I cannot."]
    parts = CoherenceScorer(fake, batch_size=2).score_parts(prompts, outputs)
    assert [len(c) for _, c in fake.batches] == [2, 2]
    assert [c for _, b in fake.batches for c in b] == ["Sure.", "No.", "Sorry.", "I cannot."]
    assert fake.batches[0][0][0] == [{"role": "user", "content": "q0"}]
    assert fake.batches[1][0][1] is system_conv
    assert parts[1].score == 0.0 and parts[1].n_tokens == 0
    assert parts[4].n_tokens == 2


def test_scorer_rejects_mismatched_backend_rows() -> None:
    class Short(FakeScorer):
        def continuation_logprobs(self, conversations, continuations):  # type: ignore[no-untyped-def]
            return super().continuation_logprobs(conversations, continuations)[:-1]

    with pytest.raises(BackendError):
        CoherenceScorer(Short()).score(["a", "b"], ["x y", "y z"])
    with pytest.raises(ValueError):
        CoherenceScorer(FakeScorer()).score(["a"], ["x", "y"])
