"""Reproducible sampling and end-of-turn stopping for batched generation.

**Per-row seeds.** Every row of a batch samples from its own random stream, seeded by the
row's own seed, so a row's text depends only on its prompt, its interventions and its seed —
never on its batch-mates, the batch size or the order rows were run in (vLLM's per-request
``seed`` is the reference behaviour). Sampling is by inverse CDF: at generation step ``t``,
row ``b`` draws ``u[b, t]`` from ``torch.Generator().manual_seed(seed_b)`` (all steps drawn at
once, on the CPU, so the stream is the same on every device) and takes the first token whose
cumulative probability exceeds ``u``. That is an exact draw from ``softmax(logits / T)``
(after top-k / top-p), costs one softmax and one cumulative sum per step like plain sampling,
and runs inside Hugging Face ``generate`` under greedy decoding: the processor returns scores
that are ``-inf`` everywhere but the drawn token.

**Stopping.** A row stops at the model's end-of-sequence tokens (Hugging Face's own criterion)
or as soon as its generated text contains a stop string (the plain format's next ``User:`` turn,
or strings the caller gives); the batch ends when every row has stopped. The reply is cut
before the stop string and carries its finish reason: ``"stop"`` or ``"length"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from transformers import LogitsProcessor, StoppingCriteria

from steerlab.models.backend import Completion, FinishReason  # noqa: F401  (re-exported)

#: Largest seed accepted (seeds are reduced modulo 2**63 by torch; we keep them explicit).
MAX_SEED = 2**63 - 1


def row_seeds(seed: int | Sequence[int] | None, n: int) -> list[int]:
    """One seed per row: a sequence is used as given; an int ``s`` gives ``s, s+1, …``;
    None draws fresh seeds from torch's global generator (so ``torch.manual_seed`` applies)."""
    if seed is None:
        return [int(x) for x in torch.randint(0, 2**31 - 1, (n,))]
    if isinstance(seed, int):
        return [seed + i for i in range(n)]
    seeds = [int(s) for s in seed]
    if len(seeds) != n:
        raise ValueError(f"{len(seeds)} seeds for {n} prompts; give one seed, or one per prompt")
    return seeds


class SeededSampler(LogitsProcessor):
    """Draw each row's next token from its own seeded stream (see the module docstring).

    Args:
        seeds: one seed per row.
        temperature: > 0.
        max_steps: generation steps to prepare random numbers for.
        top_k: keep the k most likely tokens (0 = all).
        top_p: keep the smallest set of tokens whose probability reaches top_p (1 = all).
    """

    def __init__(
        self, seeds: Sequence[int], temperature: float, max_steps: int, *, top_k: int = 0, top_p: float = 1.0
    ) -> None:
        if not temperature > 0:
            raise ValueError("SeededSampler needs temperature > 0")
        self.temperature = float(temperature)
        self.top_k = int(top_k)
        self.top_p = float(top_p)
        # u[b, t]: the uniform draw of row b at step t, from the row's own generator. [B, max_steps]
        self.u = torch.stack(
            [
                torch.rand(max_steps, generator=torch.Generator().manual_seed(int(s) % MAX_SEED), dtype=torch.float64)
                for s in seeds
            ]
        )
        self.step = 0

    def _filter(self, scores: torch.Tensor) -> torch.Tensor:
        if 0 < self.top_k < scores.shape[-1]:
            kth = torch.topk(scores, self.top_k, dim=-1).values[..., -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.top_p < 1.0:
            sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
            probs = torch.softmax(sorted_scores, dim=-1)
            before = probs.cumsum(-1) - probs  # mass of strictly more likely tokens
            drop_sorted = before >= self.top_p
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            scores = scores.masked_fill(drop, float("-inf"))
        return scores

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        b = scores.shape[0]
        if self.step >= self.u.shape[1]:
            raise RuntimeError("SeededSampler: more generation steps than prepared for")
        logits = self._filter(scores.float() / self.temperature)
        cdf = torch.softmax(logits, dim=-1).double().cumsum(-1)  # [B, V]
        u = self.u[:b, self.step].to(cdf.device).unsqueeze(-1) * cdf[:, -1:]  # [B, 1]
        token = torch.searchsorted(cdf, u).clamp_(max=logits.shape[-1] - 1)  # [B, 1]
        self.step += 1
        out = torch.full_like(logits, float("-inf"))
        return cast(torch.FloatTensor, out.scatter_(-1, token, 0.0))  # HF's LogitsProcessor signature


class StopOnStrings(StoppingCriteria):
    """Stop a row once its generated text contains any of ``stops``.

    Only the last few tokens of each row are decoded per step (enough to contain the longest
    stop string), so the check stays cheap for long replies.
    """

    def __init__(self, tokenizer: object, stops: Sequence[str], prompt_width: int) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.prompt_width = prompt_width
        self.window = max(8, max((len(s) for s in self.stops), default=0) + 2)
        self.stop_step: dict[int, int] = {}  # row -> number of generated tokens when it stopped

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        b = input_ids.shape[0]
        done = cast(
            torch.BoolTensor, torch.zeros(b, dtype=torch.bool, device=input_ids.device)
        )  # HF's StoppingCriteria type
        n_gen = input_ids.shape[1] - self.prompt_width
        if not self.stops or n_gen <= 0:
            return done
        for row in range(b):
            if row in self.stop_step:
                done[row] = True
                continue
            tail = input_ids[row, max(self.prompt_width, input_ids.shape[1] - self.window) :].tolist()
            text = self.tokenizer.decode(tail, skip_special_tokens=True)  # type: ignore[attr-defined]
            if any(s in text for s in self.stops):
                self.stop_step[row] = n_gen
                done[row] = True
        return done


def cut_at_stops(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string, and whether one was found."""
    cut = min((text.index(s) for s in stops if s and s in text), default=None)
    return (text, False) if cut is None else (text[:cut], True)
