"""A loaded Hugging Face causal LM with steerlab's batching, chat formatting and interventions.

:class:`LanguageModel` is the local backend: it implements
:class:`~steerlab.models.backend.TextGenerator` and :class:`~steerlab.models.backend.LogprobScorer`,
and every method takes ``interventions=[...]`` applied for that call only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from steerlab.errors import InputError
from steerlab.models.backend import Conversation
from steerlab.models.chat import ChatFormatter
from steerlab.models.layers import arch_spec, base_model, hidden_size, num_layers

if TYPE_CHECKING:
    from steerlab.interventions.base import Intervention

_ARCH_KEYS = ("model_type", "hidden_size", "n_embd", "num_hidden_layers", "n_layer", "intermediate_size",
              "num_attention_heads", "num_key_value_heads", "vocab_size", "head_dim")


def config_hash(config: Any) -> str:
    """Hash of the architecture-defining config fields (not the name, not the dtype)."""
    d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    core = {k: d.get(k) for k in _ARCH_KEYS if d.get(k) is not None}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Batch:
    """A left-padded batch of prompts."""

    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    prompt_len: torch.Tensor  # [B] real tokens per row
    texts: list[str]


@dataclass
class LanguageModel:
    """A causal LM, its tokenizer and chat formatter. Build one with :func:`steerlab.load_model`."""

    model: nn.Module
    tokenizer: Any
    model_id: str
    chat: ChatFormatter = field(default=None)  # type: ignore[assignment]
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.chat is None:
            self.chat = ChatFormatter(self.tokenizer)
        tok = self.tokenizer
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        arch_spec(self.model)  # fail early, with a clear message, on an unknown architecture
        self.model.eval()

    # ---- facts -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.model_id

    @property
    def n_layers(self) -> int:
        return num_layers(self.model)

    @property
    def hidden_size(self) -> int:
        return hidden_size(self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def config_hash(self) -> str:
        return config_hash(self.model.config)

    # ---- text → tokens -----------------------------------------------------------------
    def format(self, prompt: str | Conversation, system: str | None = None) -> str:
        """Prompt text for a user message (str) or a conversation, via the chat formatter."""
        conv: Conversation = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        if system:
            conv = [{"role": "system", "content": system}, *[m for m in conv if m["role"] != "system"]]
        return self.chat.format(conv)

    def tokenize(self, texts: Sequence[str]) -> Batch:
        """Left-padded batch of already formatted texts."""
        add_special = not self.chat.uses_template  # templates write their own BOS
        enc = self.tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=add_special)
        ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
        return Batch(ids, mask, mask.sum(-1), list(texts))

    def tokenize_with_completions(
        self, prompts: Sequence[str], completions: Sequence[str]
    ) -> tuple[Batch, list[list[int]]]:
        """Left-padded batch of formatted prompts each followed by its completion.

        ``prompt_len`` counts the prompt tokens only, so the completion's tokens are the
        "generated" positions. In the plain format a completion gets a leading space (replies
        follow "Assistant:"). Also returns each completion's token ids.
        """
        add_special = not self.chat.uses_template  # templates write their own BOS
        p_ids = [self.tokenizer(p, add_special_tokens=add_special)["input_ids"] for p in prompts]
        c_ids = []
        for c in completions:
            if c and add_special and not c.startswith((" ", "\n")):
                c = " " + c
            c_ids.append(self.tokenizer(c, add_special_tokens=False)["input_ids"] if c else [])
        seqs = [p + c for p, c in zip(p_ids, c_ids)]
        width = max(len(q) for q in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(q)) + q for q in seqs], device=self.device)
        mask = torch.tensor([[0] * (width - len(q)) + [1] * len(q) for q in seqs], device=self.device)
        return Batch(ids, mask, torch.tensor([len(p) for p in p_ids], device=self.device), list(prompts)), c_ids

    # ---- forward passes ----------------------------------------------------------------
    @contextlib.contextmanager
    def _session(self, interventions: Sequence["Intervention"], prompt_len: torch.Tensor | None) -> Iterator[None]:
        from steerlab.interventions.base import intervene
        from steerlab.interventions.hooks import hook_manager

        mgr = hook_manager(self.model)
        with torch.inference_mode(), intervene(self.model, *interventions):
            mgr.fixed_prompt_len = prompt_len
            try:
                yield
            finally:
                mgr.fixed_prompt_len = None

    def hidden_states(self, batch: Batch, interventions: Sequence["Intervention"] = ()) -> torch.Tensor:
        """Final-norm hidden states ``[B, T, d]`` (no LM head)."""
        with self._session(interventions, batch.prompt_len):
            out = base_model(self.model)(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
        return out[0] if isinstance(out, tuple) else out.last_hidden_state

    def _head(self, h: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits from hidden states ``[N, d]``, for all tokens or only ``token_ids`` ``[K]``."""
        head = self.model.get_output_embeddings()
        with torch.inference_mode():
            w = head.weight if token_ids is None else head.weight[token_ids]
            logits = h @ w.T
            bias = getattr(head, "bias", None)
            if bias is not None:
                logits = logits + (bias if token_ids is None else bias[token_ids])
            cap = getattr(self.model.config, "final_logit_softcapping", None)
            if cap:
                logits = torch.tanh(logits / cap) * cap
        return logits

    def next_token_logits(
        self, prompts: Sequence[str | Conversation], token_ids: Sequence[int], *, system: str | None = None,
        interventions: Sequence["Intervention"] = (),
    ) -> torch.Tensor:
        """Logits of selected tokens at the next position ``[N, K]`` — never the full vocabulary."""
        ids = torch.as_tensor(list(token_ids), device=self.device)
        rows = []
        for batch in self._batches([self.format(p, system) for p in prompts]):
            h = self.hidden_states(batch, interventions)[:, -1]
            rows.append(self._head(h, ids).float().cpu())
        return torch.cat(rows)

    def _batches(self, texts: Sequence[str]) -> Iterator[Batch]:
        for i in range(0, len(texts), self.batch_size):
            yield self.tokenize(texts[i : i + self.batch_size])

    def continuation_logprobs(
        self, conversations: Sequence[str | Conversation], continuations: Sequence[str],
        *, interventions: Sequence["Intervention"] = (),
    ) -> list[list[float]]:
        """Per-token log-probabilities of each continuation after its (formatted) prompt."""
        if len(conversations) != len(continuations):
            raise InputError("continuation_logprobs: as many continuations as prompts are needed")
        out: list[list[float]] = []
        for i in range(0, len(conversations), self.batch_size):
            prompts = [self.format(c) for c in conversations[i : i + self.batch_size]]
            batch, c_ids = self.tokenize_with_completions(prompts, continuations[i : i + self.batch_size])
            width = batch.input_ids.shape[1]
            h = self.hidden_states(batch, interventions)  # [B, T, d]
            for b, c in enumerate(c_ids):
                if not c:
                    out.append([])
                    continue
                n = len(c)
                hh = h[b, width - n - 1 : width - 1]  # positions predicting each continuation token
                lp = torch.log_softmax(self._head(hh).float(), dim=-1)
                out.append(lp[torch.arange(n), torch.tensor(c, device=lp.device)].cpu().tolist())
        return out

    # ---- generation --------------------------------------------------------------------
    def generate(
        self,
        conversations: Sequence[str | Conversation],
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        seed: int | None = None,
        system: str | None = None,
        interventions: Sequence["Intervention"] = (),
        batch_size: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[str]:
        """Generate one reply per prompt. ``interventions`` apply to this call only.

        Per-row interventions (a strength or vector per row) need ``batch_size`` equal to the
        number of prompts, or per-row values aligned with each batch; pass a single batch for sweeps.
        ``progress``, if given, is called as ``progress(done, total)`` (prompts) after each batch.
        """
        texts = [self.format(c, system) for c in conversations]
        bs = batch_size or self.batch_size
        replies: list[str] = []
        for i in range(0, len(texts), bs):
            batch = self.tokenize(texts[i : i + bs])
            replies.extend(self._generate_batch(batch, max_new_tokens, temperature, seed, interventions))
            if progress is not None:
                progress(len(replies), len(texts))
        return replies

    def _generate_batch(
        self, batch: Batch, max_new_tokens: int, temperature: float, seed: int | None,
        interventions: Sequence["Intervention"],
    ) -> list[str]:
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if seed is not None:
            torch.manual_seed(seed)
        with self._session(interventions, batch.prompt_len):
            out = self.model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **kwargs)
        new = out[:, batch.input_ids.shape[1] :]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [self._trim(t) for t in texts]

    def _trim(self, text: str) -> str:
        """Cut a base model's reply where it starts writing the next turn of the plain format."""
        if not self.chat.uses_template:
            for stop in ("\nUser:", "\nAssistant:"):
                if stop in text:
                    text = text[: text.index(stop)]
        return text.strip()
