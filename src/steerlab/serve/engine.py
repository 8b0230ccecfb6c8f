"""Generation for the server: one batch of rows (from one or many requests) in one ``complete`` call.

A row is one choice of one request: its formatted prompt, its seed, its steering spec and
whether it wants log-probabilities or a token stream. The rows of a batch share the sampling
settings (:class:`GroupKey`); everything else is per row. Steering becomes per-row
:class:`~steerlab.interventions.Add` / :class:`~steerlab.interventions.Ablate` through
:func:`steerlab.interventions.spec.batch_interventions`, so an unsteered row (or strength 0)
computes exactly what it would alone, and per-row seeds make a sampled row independent of its
batch-mates.

Log-probabilities and streaming ride on one Hugging Face logits processor (:class:`StepRecorder`)
that sees the raw logits of every step before sampling: it keeps the top-k alternatives and,
one step later, the log-probability of the token that was chosen, and hands each new token to
the row's stream. Log-probabilities are those of the model's own distribution (temperature 1,
no top-p / top-k filtering), as vLLM reports them by default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from transformers import LogitsProcessor

from steerlab.models.backend import Completion

if TYPE_CHECKING:
    from steerlab.interventions.spec import InterventionSpec
    from steerlab.models.hf import LanguageModel
    from steerlab.vectors.vector import SteeringVector

#: Called from the generation thread with each new token id of a row (thread-safe sinks only).
TokenSink = Callable[[int], None]


@dataclass(frozen=True)
class GroupKey:
    """Sampling settings the rows of one forward pass share."""

    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    stops: tuple[str, ...]


@dataclass
class RowJob:
    """One choice to generate.

    Attributes:
        text: the formatted prompt.
        seed: the row's sampling seed.
        steer: what the row does to the model (kind ``none`` for nothing).
        top_logprobs: None = no log-probabilities; k >= 0 = the chosen token's and k alternatives.
        sink: receives the row's tokens as they are generated (streaming), or None.
    """

    text: str
    seed: int
    steer: InterventionSpec
    top_logprobs: int | None = None
    sink: TokenSink | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: its id, log-probability and the top alternatives ``[(id, logprob), ...]``."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class RowResult:
    """A finished row: the core's :class:`Completion` and, when asked for, per-token log-probabilities."""

    completion: Completion
    logprobs: tuple[TokenLogprob, ...] | None = None


class StepRecorder(LogitsProcessor):
    """A logits processor that records log-probabilities and streams tokens; scores pass unchanged.

    Hugging Face calls it once per generation step with the sequences so far ``[B, T]`` and the
    raw next-token logits ``[B, V]``; the token chosen at step ``t`` is first visible at step
    ``t + 1``, so its log-probability is read then (and after the last step, by :meth:`finish`).

    Args:
        top_k: alternatives to keep per step (0 = only the chosen token's log-probability);
            None = record nothing (streaming only).
        sinks: per row, a sink for its new tokens, or None.
    """

    def __init__(self, top_k: int | None, sinks: Sequence[TokenSink | None]) -> None:
        self.top_k = top_k
        self.sinks = list(sinks)
        self.chosen: list[torch.Tensor] = []  # per step: [B] log-prob of the token chosen at that step
        self.top_values: list[torch.Tensor] = []  # per step: [B, k]
        self.top_ids: list[torch.Tensor] = []  # per step: [B, k]
        self._last: torch.Tensor | None = None  # [B, V] log-probs of the previous step
        self.steps = 0

    def _take_chosen(self, token: torch.Tensor) -> None:
        # token: [B, 1], the token chosen at the previous step
        if self._last is not None:
            self.chosen.append(self._last.gather(-1, token.to(self._last.device)).squeeze(-1).cpu())
            self._last = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.steps > 0:
            last = input_ids[:, -1:]  # [B, 1]
            self._take_chosen(last)
            if any(s is not None for s in self.sinks):
                for row, tok in enumerate(last.squeeze(-1).tolist()):
                    if self.sinks[row] is not None:
                        self.sinks[row](int(tok))  # type: ignore[misc]
        if self.top_k is not None:
            lp = torch.log_softmax(scores.float(), dim=-1)  # [B, V]
            if self.top_k > 0:
                values, ids = lp.topk(min(self.top_k, lp.shape[-1]), dim=-1)  # [B, k]
                self.top_values.append(values.cpu())
                self.top_ids.append(ids.cpu())
            self._last = lp
        self.steps += 1
        return scores

    def finish(self, completions: Sequence[Completion]) -> None:
        """Record the last step's chosen tokens (no processor call follows the last step).

        A row still running at the last step has its token there; a row that stopped earlier
        does not need one (any id will do).
        """
        last = [c.token_ids[self.steps - 1] if len(c.token_ids) >= self.steps else 0 for c in completions]
        self._take_chosen(torch.tensor(last).unsqueeze(-1))

    def row(self, b: int, c: Completion, k: int) -> tuple[TokenLogprob, ...]:
        """Row ``b``'s generated tokens with their log-probabilities and ``k`` alternatives each."""
        out = []
        for t in range(c.completion_tokens):
            top: tuple[tuple[int, float], ...] = ()
            if k > 0:
                top = tuple(zip(self.top_ids[t][b, :k].tolist(), self.top_values[t][b, :k].tolist()))
            out.append(TokenLogprob(c.token_ids[t], float(self.chosen[t][b]), top))
        return tuple(out)


class Generator:
    """Runs batches of rows on one model with a table of named vectors.

    Args:
        lm: the loaded model.
        vectors: the vectors requests may name, by name.
    """

    def __init__(self, lm: LanguageModel, vectors: Mapping[str, SteeringVector]) -> None:
        self.lm = lm
        self.vectors = dict(vectors)

    def run(self, key: GroupKey, rows: Sequence[RowJob]) -> list[RowResult]:
        """Generate every row in one ``complete`` call (one batch)."""
        from steerlab.interventions.spec import batch_interventions

        interventions = batch_interventions([r.steer for r in rows], self.vectors)
        wants = [r.top_logprobs for r in rows if r.top_logprobs is not None]
        sinks = [r.sink for r in rows]
        recorder = StepRecorder(max(wants) if wants else None, sinks) if wants or any(sinks) else None
        completions = self.lm.complete(
            [r.text for r in rows],
            formatted=True,
            max_new_tokens=key.max_tokens,
            temperature=key.temperature,
            seed=[r.seed for r in rows],
            stop=key.stops,
            top_p=key.top_p,
            top_k=key.top_k,
            interventions=interventions,
            batch_size=len(rows),
            logits_processors=[recorder] if recorder else [],
        )
        if recorder is None or not wants:
            return [RowResult(c) for c in completions]
        recorder.finish(completions)
        return [
            RowResult(c, recorder.row(b, c, r.top_logprobs) if r.top_logprobs is not None else None)
            for b, (c, r) in enumerate(zip(completions, rows))
        ]
