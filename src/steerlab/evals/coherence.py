"""Coherence score in [0, 1]: how fluent the UNSTEERED model finds an output, times how little it repeats.

Definition, for an output text ``y`` answering prompt ``x``:

* ``lp_1 .. lp_T``: natural-log probabilities the unsteered model gives each token of ``y``
  after ``x`` (from :class:`~steerlab.models.backend.LogprobScorer`), ``m = mean(lp)``.
* **fluency** ``F = clip(1 + m / 10, 0, 1)``, equivalently ``1 - ln(perplexity) / 10``: a
  perplexity of 1 gives 1, a perplexity of ``e^10`` (about 22,000, worse than picking
  uniformly among 20k tokens) or more gives 0. Linear in mean log-probability, so fluent
  text (``m`` about -1 to -3) lands around 0.7-0.9 and random tokens (``m`` below -10) at 0.
* **repetition** ``R``: the share of word-level 3-grams that repeat an earlier 3-gram,
  ``R = 1 - distinct / total``, over the tokens of ``re.findall(r"\\w+|[^\\w\\s]", y.lower())``
  (words and single punctuation marks); ``R = 0`` with fewer than 3 such tokens. A token loop
  ("no no no no ...") has ``R`` near 1 even though the model finds loops very likely.
* **coherence** ``C = F * (1 - R)``; an empty or whitespace-only output scores 0.

The prompt conditions the likelihood but is not scored. Steering breaks text in two ways the
two factors catch: gibberish (low likelihood under the unsteered model) and degenerate loops
(high repetition).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from steerlab.errors import BackendError
from steerlab.models.backend import Conversation, LogprobScorer, user

LOGPROB_FLOOR: float = -10.0  # mean log-prob (nats/token) at which fluency reaches 0
NGRAM: int = 3

_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class CoherenceParts:
    """The pieces of one coherence score (see the module docstring).

    Attributes:
        score: ``fluency * (1 - repetition)``, in [0, 1].
        fluency: ``clip(1 + mean_logprob / 10, 0, 1)``.
        repetition: Share of repeated word 3-grams, in [0, 1].
        mean_logprob: Mean per-token log-probability (nan for an empty output).
        n_tokens: Number of scored model tokens.
    """

    score: float
    fluency: float
    repetition: float
    mean_logprob: float
    n_tokens: int


def word_tokens(text: str) -> list[str]:
    """Lower-cased words and single punctuation marks, the units repetition is counted in.

    Args:
        text: Any output.
    """
    return _TOKEN.findall(text.lower())


def repetition_share(tokens: Sequence[str], n: int = NGRAM) -> float:
    """Share of n-grams that repeat an earlier one: ``1 - distinct / total`` (0 if none).

    Args:
        tokens: Token sequence.
        n: n-gram length.

    Example:
        >>> repetition_share("a b a b a b".split())  # aba bab aba bab: 2 of 4 distinct
        0.5
    """
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return 0.0 if not grams else 1.0 - len(set(grams)) / len(grams)


def fluency_from_logprobs(logprobs: Sequence[float]) -> float:
    """``clip(1 + mean(logprobs) / 10, 0, 1)``; 0 for an empty list.

    Args:
        logprobs: Per-token natural-log probabilities (each <= 0).

    Raises:
        ValueError: a NaN or positive log-probability.
    """
    if not logprobs:
        return 0.0
    if any(math.isnan(lp) or lp > 1e-6 for lp in logprobs):
        raise ValueError("log-probabilities must be <= 0 and not NaN")
    mean = sum(logprobs) / len(logprobs)
    return min(1.0, max(0.0, 1.0 + mean / -LOGPROB_FLOOR))


def coherence_parts(logprobs: Sequence[float], tokens_or_text: str | Sequence[str]) -> CoherenceParts:
    """Fluency, repetition and their product for one output.

    Args:
        logprobs: The unsteered model's per-token log-probabilities of the output.
        tokens_or_text: The output text (split with :func:`word_tokens`) or an
            already-tokenised sequence used as-is for the repetition count.
    """
    tokens = word_tokens(tokens_or_text) if isinstance(tokens_or_text, str) else list(tokens_or_text)
    mean = sum(logprobs) / len(logprobs) if logprobs else math.nan
    if not tokens or not logprobs:
        return CoherenceParts(0.0, 0.0, 0.0, mean, len(logprobs))
    fluency = fluency_from_logprobs(logprobs)
    rep = repetition_share(tokens)
    return CoherenceParts(fluency * (1.0 - rep), fluency, rep, mean, len(logprobs))


def coherence_from_logprobs(logprobs: Sequence[float], tokens_or_text: str | Sequence[str]) -> float:
    """Coherence score in [0, 1] of one output (definition in the module docstring).

    Args:
        logprobs: The unsteered model's per-token log-probabilities of the output.
        tokens_or_text: The output text or its tokens (for the repetition penalty).

    Example:
        >>> round(coherence_from_logprobs([-1.0, -3.0], "The cat sat on the mat."), 3)
        0.8
    """
    return coherence_parts(logprobs, tokens_or_text).score


class CoherenceScorer:
    """Batch coherence scoring with an unsteered model.

    Args:
        scorer: The UNSTEERED model as a LogprobScorer (no intervention attached).
        batch_size: Rows per ``continuation_logprobs`` call.

    Example:
        >>> CoherenceScorer(model).score(["Hi?"], ["Hello! How can I help?"])  # doctest: +SKIP
    """

    def __init__(self, scorer: LogprobScorer, *, batch_size: int = 16) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.scorer = scorer
        self.batch_size = batch_size
        self.name = f"coherence({scorer.name})"

    def score_parts(self, prompts: Sequence[str | Conversation], outputs: Sequence[str]) -> list[CoherenceParts]:
        """Coherence parts per row; empty outputs score 0 without a model call.

        Args:
            prompts: The prompt each output answered (a string becomes a one-turn user
                conversation, no system prompt) or a full conversation.
            outputs: The outputs to score.
        """
        if len(prompts) != len(outputs):
            raise ValueError(f"got {len(prompts)} prompts but {len(outputs)} outputs")
        rows = [i for i, o in enumerate(outputs) if o.strip()]
        logprobs: dict[int, list[float]] = {}
        for start in range(0, len(rows), self.batch_size):
            idx = rows[start : start + self.batch_size]
            convs = [user(p) if isinstance(p, str) else p for p in (prompts[i] for i in idx)]
            got = self.scorer.continuation_logprobs(convs, [outputs[i] for i in idx])
            if len(got) != len(idx):
                raise BackendError(f"{self.scorer.name} returned {len(got)} rows of log-probs for {len(idx)}")
            logprobs.update(zip(idx, got))
        return [coherence_parts(logprobs.get(i, []), o) for i, o in enumerate(outputs)]

    def score(self, prompts: Sequence[str | Conversation], outputs: Sequence[str]) -> list[float]:
        """Coherence score in [0, 1] per row.

        Args:
            prompts: As in :meth:`score_parts`.
            outputs: The outputs to score.
        """
        return [p.score for p in self.score_parts(prompts, outputs)]
