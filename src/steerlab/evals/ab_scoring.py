"""Score A/B questions from the answer-letter logits at the answer position only.

A question's prompt ends right before the answer letter (:func:`steerlab.evals.ab.ab_prompt`).
One forward pass gives the final hidden state at that last position; the LM head is applied
to the two letter rows only (:meth:`LanguageModel.logits_for`), never to the whole vocabulary
at every position. Per row:

    logit difference   logit(behaviour letter) − logit(other letter)
    p(behaviour)       softmax over the two letters = sigmoid(logit difference)
    behaviour match    logit difference > 0
    letter mass        p(behaviour letter) + p(other letter) under the full next-token
                       distribution — low mass means the steered model no longer answers
                       with a letter, so the A/B proxy is not measuring an answer any more.
                       It needs the softmax normaliser at the answer position: one
                       log-sum-exp over the vocabulary for that single position per row,
                       streamed through the head in vocabulary chunks for all rows at once
                       (:meth:`LanguageModel.vocab_logsumexp`; ``mass=False`` skips it).

:func:`score_ab` scores questions in ordinary batches. :func:`score_conditions` scores ONE
prompt under many per-row conditions (vector × scale): the layers below the first steered
layer are computed once for the prompt and only the rest run per condition
(:class:`~steerlab.models.sliced.LayerSlice`); an unpadded group needs no padding mask.

Example:
    >>> s = score_ab(lm, qs.questions, system="You are a helpful assistant.")
    >>> s[0].logit_diff, s[0].p_behavior, s[0].mass
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from steerlab.evals.ab import ABQuestion, ab_prompt, check_letter_position, default_answer_prefix, letter_token_ids

if TYPE_CHECKING:
    import torch

    from steerlab.interventions.base import Intervention
    from steerlab.models.hf import LanguageModel


@dataclass(frozen=True)
class LetterScore:
    """One row's answer-letter logits.

    Attributes:
        logit_behavior: logit of the behaviour letter at the answer position.
        logit_other: logit of the other labelled letter.
        log_mass: log(p(behaviour) + p(other)) under the full next-token distribution, or None.
    """

    logit_behavior: float
    logit_other: float
    log_mass: float | None = None

    @property
    def logit_diff(self) -> float:
        return self.logit_behavior - self.logit_other

    @property
    def p_behavior(self) -> float:
        """Probability of the behaviour letter among the two letters."""
        return 1.0 / (1.0 + math.exp(-self.logit_diff))

    @property
    def matches(self) -> bool:
        return self.logit_diff > 0

    @property
    def mass(self) -> float | None:
        return None if self.log_mass is None else math.exp(self.log_mass)


def letter_scores(lm: LanguageModel, h: torch.Tensor, ids: torch.Tensor, *, mass: bool = True) -> list[LetterScore]:
    """Scores from final hidden states at the answer position.

    Args:
        h: ``[R, d]`` final-norm hidden states at the answer position.
        ids: ``[R, 2]`` token ids (behaviour letter, other letter) per row.
        mass: also compute the letter mass (needs the vocabulary normaliser at this position).
    """
    import torch

    with torch.inference_mode():
        uniq, inv = torch.unique(ids, return_inverse=True)
        rows = lm.logits_for(h, uniq).float()  # [R, U]: only the letter rows of the head
        pair = torch.gather(rows, 1, inv.to(rows.device))  # [R, 2]
        log_mass = None
        if mass:
            log_mass = (torch.logsumexp(pair, dim=-1) - lm.vocab_logsumexp(h)).tolist()
    pair_l = pair.tolist()
    return [LetterScore(b, o, None if log_mass is None else log_mass[i]) for i, (b, o) in enumerate(pair_l)]


def question_letters(q: ABQuestion, invert: bool = False) -> tuple[str, str]:
    """(behaviour letter, other letter): the matching answer, or the non-matching one with ``invert``."""
    return (q.not_matching, q.matching) if invert else (q.matching, q.not_matching)


def score_ab(
    lm: LanguageModel,
    questions: Sequence[ABQuestion],
    *,
    system: str | None = None,
    answer_prefix: str | None = None,
    invert: bool = False,
    interventions: Sequence[Intervention] = (),
    batch_size: int | None = None,
    mass: bool = True,
) -> list[LetterScore]:
    """Score each question once, in ordinary left-padded batches.

    Args:
        lm: the model.
        questions: parsed questions (see :func:`~steerlab.evals.ab.load_ab_questions`).
        system: system prompt.
        answer_prefix: text before the letter (default :func:`~steerlab.evals.ab.default_answer_prefix`).
        invert: the behaviour is the *non*-matching answer.
        interventions: applied to every row (per-row values need ``batch_size`` = len(questions)).
        batch_size: rows per pass (default: the model's).
        mass: compute the letter mass.
    """
    import torch

    prefix = default_answer_prefix(lm) if answer_prefix is None else answer_prefix
    ids = letter_token_ids(lm, shown_letters(questions), prefix)
    prompts = [ab_prompt(lm, q, system, prefix) for q in questions]
    if prompts:
        first = question_letters(questions[0], invert)[0]
        check_letter_position(lm, prompts[0], first, ids[first])
    pairs = torch.tensor([[ids[x] for x in question_letters(q, invert)] for q in questions], dtype=torch.long)
    bs = batch_size or lm.batch_size
    out: list[LetterScore] = []
    for i in range(0, len(prompts), bs):
        batch = lm.tokenize(prompts[i : i + bs])
        h = lm.hidden_states(batch, interventions)[:, -1]
        out += letter_scores(lm, h, pairs[i : i + bs].to(h.device), mass=mass)
    return out


def shown_letters(questions: Sequence[ABQuestion]) -> list[str]:
    """Every letter shown in ``questions``, sorted."""
    return sorted({x for q in questions for x in q.letters})


def score_conditions(
    lm: LanguageModel,
    prompt: str,
    letter_ids: tuple[int, int],
    interventions: Sequence[Intervention],
    n_rows: int,
    *,
    mass: bool = True,
) -> list[LetterScore]:
    """Score one formatted prompt under ``n_rows`` conditions in one batch.

    Args:
        prompt: formatted prompt ending before the letter (:func:`~steerlab.evals.ab.ab_prompt`).
        letter_ids: (behaviour letter id, other letter id).
        interventions: per-row interventions sized for ``n_rows`` (rows with strength 0 are unsteered).
        n_rows: number of conditions.
        mass: compute the letter mass.

    The layers below the earliest steered layer run once, for the prompt alone; the rest run
    for all ``n_rows`` rows (no padding, so no padding mask).
    """
    import torch

    from steerlab.models.sliced import LayerSlice, later_equivalent

    batch = lm.tokenize([prompt])
    interventions = [later_equivalent(iv, lm.model) for iv in interventions]  # skip the source layer's recompute
    layers = [e.layer for iv in interventions for e in iv.entries(lm.model)]
    ids = torch.tensor([list(letter_ids)] * n_rows, dtype=torch.long)
    if not layers:
        h = lm.hidden_states(batch)[:, -1].expand(n_rows, -1)
    else:
        sl = LayerSlice(lm, batch, start=min(layers), final_norm=True)
        h = sl.run(interventions, rows=torch.zeros(n_rows, dtype=torch.long))[:, -1]
    return letter_scores(lm, h, ids.to(h.device), mass=mass)
