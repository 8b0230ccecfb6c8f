"""Answer distributions from one scoring pass: ratings over a template's scale, A/B choices.

For a rating template with declared values ``v_1..v_K`` and answer strings per value
(``"3"``, ``"+3"``; ``"good"``, ``"Good"``), a backend that implements
:class:`~steerlab.models.backend.OptionScorer` gives ``log P(reply starts with s)`` for every
answer string ``s``. Then

    log q(v)  = logsumexp over the strings of v
    p(v)      = q(v) / Σ_u q(u)               (the distribution over the declared scale)
    scale mass = Σ_u q(u)                     (how much of the reply distribution lands on the scale)
    expected  = Σ_v p(v) · v,   entropy = −Σ_v p(v) log p(v)  (nats)

The local model scores every answer as a whole word (``exact=True``, the rule of
:mod:`steerlab.prefs.words` that the reply parser uses: "1" is not "10" or "1st", the "A" of
"Answer: B" is no "A"); an API
scores what its top log-probabilities show (others are -inf). For a pairwise question the
options are "A" and "B": ``p_first = P(A) / (P(A) + P(B))`` with mass ``P(A) + P(B)``.

Example:
    >>> dists = rating_distributions(lm, [conv], rating_template("anchored_1_5"))
    >>> dists[0].expected, dists[0].entropy, dists[0].scale_mass
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scipy.special import logsumexp

from steerlab.prefs.templates import RatingTemplate

if TYPE_CHECKING:  # steerlab.models imports torch; the prefs package does not
    from steerlab.models.backend import Conversation, OptionScorer


def _logsumexp(xs: Sequence[float]) -> float:
    """log Σ exp(x) as a Python float (-inf when every x is -inf)."""
    return float(logsumexp(xs))


@dataclass(frozen=True)
class AnswerDistribution:
    """A distribution over a template's declared values.

    Attributes:
        values: The declared values, increasing.
        probs: Probability of each value, normalised over the scale (sums to 1).
        scale_mass: Unnormalised probability that the reply is one of the scale's answers.
    """

    values: tuple[float, ...]
    probs: tuple[float, ...]
    scale_mass: float

    @property
    def expected(self) -> float:
        """Expected rating Σ p(v) v."""
        return float(sum(p * v for p, v in zip(self.probs, self.values)))

    @property
    def entropy(self) -> float:
        """Entropy in nats (0 = all mass on one value; log K = uniform)."""
        return float(-sum(p * math.log(p) for p in self.probs if p > 0))

    @property
    def mode(self) -> float:
        """The most probable value (the smallest on ties)."""
        return self.values[max(range(len(self.probs)), key=lambda i: (self.probs[i], -i))]


def distribution_from_logprobs(template: RatingTemplate, logprobs: Mapping[str, float]) -> AnswerDistribution | None:
    """The distribution over ``template``'s scale from option log-probabilities (None if none scored).

    Args:
        template: The rating template.
        logprobs: ``{answer string: log P}`` for the strings of :meth:`RatingTemplate.options`
            (missing strings count as -inf).
    """
    options = template.options()
    per_value: dict[float, list[float]] = {v: [] for v in template.scale.values}
    for s, v in options.items():
        per_value[v].append(float(logprobs.get(s, -math.inf)))
    logq = [_logsumexp(per_value[v]) for v in template.scale.values]
    total = _logsumexp(logq)
    if total == -math.inf:
        return None
    probs = tuple(math.exp(x - total) for x in logq)
    return AnswerDistribution(template.scale.values, probs, min(1.0, math.exp(total)))


def _scores(
    scorer: OptionScorer, conversations: Sequence[Conversation], options: list[str], **kwargs: Any
) -> list[dict[str, float]]:
    from steerlab.models.hf import LanguageModel

    if isinstance(scorer, LanguageModel):  # the local model reads whole answers ("1" is not "10")
        return scorer.option_logprobs(conversations, options, exact=True, **kwargs)
    if kwargs:
        raise TypeError(f"{type(scorer).__name__} takes no {', '.join(kwargs)} in option_logprobs")
    return scorer.option_logprobs(conversations, options)


def rating_distributions(
    scorer: OptionScorer, conversations: Sequence[Conversation], template: RatingTemplate, **kwargs: Any
) -> list[AnswerDistribution | None]:
    """One :class:`AnswerDistribution` per conversation, from one scoring pass.

    Args:
        scorer: A local model or an API backend with log-probabilities.
        conversations: Rating conversations (:meth:`RatingTemplate.conversation`).
        template: The template they end with.
        **kwargs: Passed to a local model's ``option_logprobs`` (``interventions``, ``batch_size``).
    """
    options = list(template.options())
    return [distribution_from_logprobs(template, lp) for lp in _scores(scorer, conversations, options, **kwargs)]


@dataclass(frozen=True)
class ChoiceProbability:
    """P(the first-shown task is chosen), from the log-probabilities of "A" and "B".

    Attributes:
        p_first: ``P(A) / (P(A) + P(B))``; NaN when neither letter was scored.
        mass: ``P(A) + P(B)``: how much of the reply distribution is a letter at all.
    """

    p_first: float
    mass: float

    def expected_counts(self, k: int) -> tuple[int, int]:
        """``(first_wins, second_wins)`` that K samples would give on average, rounded to integers."""
        first = round(k * self.p_first)
        return first, k - first


def choice_from_logprobs(logprobs: Mapping[str, float]) -> ChoiceProbability:
    """:class:`ChoiceProbability` from ``{"A": log P, "B": log P}``."""
    a, b = float(logprobs.get("A", -math.inf)), float(logprobs.get("B", -math.inf))
    total = _logsumexp([a, b])
    if total == -math.inf:
        return ChoiceProbability(float("nan"), 0.0)
    return ChoiceProbability(math.exp(a - total), min(1.0, math.exp(total)))


def choice_probabilities(
    scorer: OptionScorer, conversations: Sequence[Conversation], **kwargs: Any
) -> list[ChoiceProbability]:
    """:class:`ChoiceProbability` per pairwise conversation, from one scoring pass.

    Args:
        scorer: A local model or an API backend with log-probabilities.
        conversations: Pairwise conversations (:meth:`PairwiseTemplate.conversation`).
        **kwargs: Passed to a local model's ``option_logprobs``.
    """
    return [choice_from_logprobs(lp) for lp in _scores(scorer, conversations, ["A", "B"], **kwargs)]
