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

Cancellation: every row carries its request's :class:`Ticket`. When a client goes away (or
its deadline passes) the ticket is cancelled from the event loop; at the next decode step
:class:`RowCanceller` forces that row's next token to end-of-sequence, so Hugging Face marks the
row finished and it no longer holds the batch open; when every row of the batch is cancelled,
generation stops at once (:class:`BatchAbandoned`). The prefill of a batch is one forward pass
and is not interrupted (``--max-prompt-tokens`` bounds it).

Echo (prompt log-probabilities, ``echo: true`` with ``logprobs``) is a separate teacher-forced
forward pass over the prompt (:meth:`Generator.prompt_logprobs`), with the row's steering.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from transformers import LogitsProcessor

from steerlab.models.backend import Completion

if TYPE_CHECKING:
    from steerlab.interventions.base import Intervention
    from steerlab.interventions.spec import InterventionSpec
    from steerlab.models.hf import Batch, LanguageModel
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


@dataclass(eq=False)  # hashed and compared by identity
class Ticket:
    """A request's cancellation flag, shared by its rows; set from the event loop, read in the model thread."""

    _event: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


class BatchAbandoned(Exception):
    """Every row of the running batch was cancelled: generation stops (raised inside ``generate``)."""


@dataclass
class RowJob:
    """One choice to generate.

    Attributes:
        ids: the prompt's token ids (a text prompt tokenized as ``LanguageModel.tokenize`` does,
            or token ids as the client sent them), generated from exactly as given.
        seed: the row's sampling seed.
        steer: what the row does to the model (kind ``none`` for nothing).
        top_logprobs: None = no log-probabilities; k >= 0 = the chosen token's and k alternatives.
        sink: receives the row's tokens as they are generated (streaming), or None.
        ticket: the request's cancellation flag.
        echo: also return the prompt tokens' log-probabilities (``echo: true`` with ``logprobs``).
    """

    ids: tuple[int, ...]
    seed: int
    steer: InterventionSpec
    top_logprobs: int | None = None
    sink: TokenSink | None = None
    ticket: Ticket = field(default_factory=Ticket)
    echo: bool = False


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: its id, log-probability and the top alternatives ``[(id, logprob), ...]``."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class RowResult:
    """A finished row: the core's :class:`Completion` and, when asked for, per-token log-probabilities.

    ``prompt_logprobs`` (echo): one entry per prompt token, the first None (nothing predicts it).
    ``cancelled``: the row was ended early because its request was cancelled (its text is partial).
    """

    completion: Completion
    logprobs: tuple[TokenLogprob, ...] | None = None
    prompt_logprobs: tuple[TokenLogprob | None, ...] | None = None
    cancelled: bool = False


class RowCanceller(LogitsProcessor):
    """Ends cancelled rows at the next decode step by forcing their next token to end-of-sequence.

    Runs after the recorder (which sees raw scores) and before the sampler. When every row's
    ticket is cancelled it raises :class:`BatchAbandoned` instead, so the batch stops at once.

    Args:
        tickets: one per row.
        eos_id: an end-of-sequence id of the model (None: rows cannot be ended one by one, only
            the whole batch when all its rows are cancelled).
    """

    def __init__(self, tickets: Sequence[Ticket], eos_id: int | None) -> None:
        self.tickets = list(tickets)
        self.eos_id = eos_id
        self.ended: set[int] = set()

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        dead = [b for b, t in enumerate(self.tickets) if t.cancelled]
        if not dead:
            return scores
        if len(dead) == len(self.tickets):
            raise BatchAbandoned
        if self.eos_id is None:
            return scores
        self.ended.update(dead)
        scores = scores.clone()
        scores[dead] = float("-inf")
        scores[dead, self.eos_id] = 0.0
        return scores


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
        eos = sorted(lm._eos_ids())
        self.eos_id: int | None = eos[0] if eos else None

    def batch(self, ids: Sequence[Sequence[int]]) -> Batch:
        """Left-padded batch of token-id prompts, as ``LanguageModel.tokenize`` builds from texts."""
        from steerlab.models.hf import Batch

        width = max(len(q) for q in ids)
        pad = self.lm.tokenizer.pad_token_id
        dev = self.lm.device
        input_ids = torch.tensor([[pad] * (width - len(q)) + list(q) for q in ids], device=dev)  # [B, T]
        mask = torch.tensor([[0] * (width - len(q)) + [1] * len(q) for q in ids], device=dev)  # [B, T]
        return Batch(input_ids, mask, mask.sum(-1), [])

    def run(self, key: GroupKey, rows: Sequence[RowJob]) -> list[RowResult]:
        """Generate every row in one batch (and, for echo rows, score their prompts)."""
        from steerlab.interventions.spec import batch_interventions

        interventions = batch_interventions([r.steer for r in rows], self.vectors)
        batch = self.batch([r.ids for r in rows])
        echoed: list[tuple[TokenLogprob | None, ...] | None] = [None] * len(rows)
        if any(r.echo for r in rows):
            echoed = self.prompt_logprobs(batch, rows, interventions)
        if key.max_tokens == 0:  # echo only: nothing generated
            return [
                RowResult(Completion("", "length", len(r.ids), 0, ()), () if r.top_logprobs is not None else None, e)
                for r, e in zip(rows, echoed)
            ]
        wants = [r.top_logprobs for r in rows if r.top_logprobs is not None]
        sinks = [r.sink for r in rows]
        recorder = StepRecorder(max(wants) if wants else None, sinks) if wants or any(sinks) else None
        canceller = RowCanceller([r.ticket for r in rows], self.eos_id)
        processors: list[LogitsProcessor] = [recorder, canceller] if recorder else [canceller]
        try:
            # The core's batch generation on token ids (``complete`` takes texts): same stopping,
            # seeded sampling and interventions as ``LanguageModel.complete``.
            completions = self.lm._generate_batch(
                batch,
                key.max_tokens,
                key.temperature,
                [r.seed for r in rows] if key.temperature > 0 else [0] * len(rows),
                interventions,
                key.stops,
                key.top_p,
                key.top_k,
                processors,
            )
        except BatchAbandoned:
            return [RowResult(Completion("", "stop", len(r.ids), 0, ()), cancelled=True) for r in rows]
        ended = canceller.ended
        if recorder is None or not wants:
            return [RowResult(c, None, e, b in ended) for b, (c, e) in enumerate(zip(completions, echoed))]
        recorder.finish(completions)
        return [
            RowResult(c, recorder.row(b, c, r.top_logprobs) if r.top_logprobs is not None else None, e, b in ended)
            for b, (c, r, e) in enumerate(zip(completions, rows, echoed))
        ]

    def prompt_logprobs(
        self, batch: Batch, rows: Sequence[RowJob], interventions: Sequence[Intervention]
    ) -> list[tuple[TokenLogprob | None, ...] | None]:
        """Each echo row's prompt tokens with their log-probabilities (first None), from one forward pass.

        The logits at position ``p`` predict token ``p + 1``; they are taken from the final hidden
        states through the LM head (``LanguageModel.logits_for``), ``chunk`` positions at a time
        so a long prompt never holds a ``[T, vocabulary]`` matrix.
        """
        chunk = 64
        h = self.lm.hidden_states(batch, interventions)  # [B, T, d]
        width = h.shape[1]
        out: list[tuple[TokenLogprob | None, ...] | None] = []
        for b, r in enumerate(rows):
            if not r.echo:
                out.append(None)
                continue
            n, k = len(r.ids), r.top_logprobs or 0
            ids = torch.tensor(r.ids)
            entries: list[TokenLogprob | None] = [None]
            for start in range(0, n - 1, chunk):
                stop = min(start + chunk, n - 1)
                hh = h[b, width - n + start : width - n + stop]  # [c, d]: predicts tokens start+1 .. stop
                with torch.inference_mode():
                    lp = torch.log_softmax(self.lm.logits_for(hh).float(), dim=-1).cpu()  # [c, V]
                nxt = ids[start + 1 : stop + 1]
                chosen = lp.gather(-1, nxt.unsqueeze(-1)).squeeze(-1)  # [c]
                if k:
                    values, top = lp.topk(min(k, lp.shape[-1]), dim=-1)  # [c, k]
                for i in range(stop - start):
                    alts = tuple(zip(top[i].tolist(), values[i].tolist())) if k else ()
                    entries.append(TokenLogprob(int(nxt[i]), float(chosen[i]), alts))
            out.append(tuple(entries))
        return out
