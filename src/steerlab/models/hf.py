"""A loaded Hugging Face causal LM with steerlab's batching, chat formatting and interventions.

:class:`LanguageModel` is the local backend: it implements
:class:`~steerlab.models.backend.TextGenerator`, :class:`~steerlab.models.backend.LogprobScorer`
and :class:`~steerlab.models.backend.OptionScorer`,
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

from steerlab.errors import InputError
from steerlab.models.backend import Completion, Conversation, FinishReason
from steerlab.models.chat import ChatFormatter
from steerlab.models.head_precision import fp32_top_head, fp32_top_logits, is_half
from steerlab.models.layers import arch_spec, base_model, hidden_size, num_layers
from steerlab.models.sampling import SeededSampler, StopOnStrings, cut_at_stops, row_seeds

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from steerlab.interventions.base import Intervention
    from steerlab.models.layers import Site

_FP32_HEAD_ROWS = 4096  # head slices up to this many rows are multiplied in float32 in a bf16 model

_ARCH_KEYS = (
    "model_type",
    "hidden_size",
    "n_embd",
    "num_hidden_layers",
    "n_layer",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "head_dim",
)


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

    @property
    def position_ids(self) -> torch.Tensor:
        """``[B, T]`` positions counted over real tokens (0 at each row's first token), as ``generate`` uses:
        without them, models with absolute position embeddings (GPT-2) shift left-padded rows."""
        return (self.attention_mask.long().cumsum(-1) - 1).clamp_min(0)


@dataclass
class LanguageModel:
    """A causal LM, its tokenizer and chat formatter. Build one with :func:`steerlab.load_model`."""

    model: PreTrainedModel
    tokenizer: Any
    model_id: str
    chat: ChatFormatter = field(default=None)  # type: ignore[assignment]
    batch_size: int = 8
    dtype_reason: str = "set by the caller"  # why the weights have their dtype (load_model: resolve_dtype)

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
    def session(
        self,
        interventions: Sequence[Intervention] = (),
        prompt_len: torch.Tensor | None = None,
        *,
        grad: bool = False,
    ) -> Iterator[None]:
        """Apply ``interventions`` with known prompt lengths for the ``with`` block.

        Forward passes inside run under ``torch.inference_mode`` unless ``grad=True``, in which
        case autograd records them (to train a vector through the hooks, as MELBO does).
        """
        from steerlab.interventions.base import intervene
        from steerlab.interventions.hooks import hook_manager

        mode = torch.enable_grad() if grad else torch.inference_mode()
        with mode, intervene(self.model, *interventions), hook_manager(self.model).prompt_lengths(prompt_len):
            yield

    def hidden_states(
        self, batch: Batch, interventions: Sequence[Intervention] = (), *, grad: bool = False
    ) -> torch.Tensor:
        """Final-norm hidden states ``[B, T, d]`` (no LM head)."""
        with self.session(interventions, batch.prompt_len, grad=grad):
            out = base_model(self.model)(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                use_cache=False,
            )
        return out[0] if isinstance(out, tuple) else out.last_hidden_state

    def forward_to_layer(
        self,
        batch: Batch,
        layer: int,
        interventions: Sequence[Intervention] = (),
        *,
        site: Site = "resid_post",
        grad: bool = False,
    ) -> torch.Tensor:
        """Activations ``[B, T, d]`` at ``(layer, site)``; the forward pass stops right there.

        Layers after ``layer`` and the LM head are never computed. With ``grad=True`` the result
        keeps its autograd graph (back to any trainable tensor in ``interventions``).
        """
        from steerlab.interventions.hooks import StopForward, hook_manager
        from steerlab.models.layers import check_layer

        layer = check_layer(self.model, layer)
        got: list[torch.Tensor] = []

        def grab(h: torch.Tensor, info: object) -> None:
            got.append(h)
            raise StopForward

        mgr = hook_manager(self.model)
        with self.session(interventions, batch.prompt_len, grad=grad):
            entry = mgr.add(layer, site, grab, capture=True)
            try:
                base_model(self.model)(
                    input_ids=batch.input_ids,
                    attention_mask=batch.attention_mask,
                    position_ids=batch.position_ids,
                    use_cache=False,
                )
            except StopForward:
                pass
            finally:
                mgr.remove(entry)
        return got[0]

    def logits_for(self, h: torch.Tensor, token_ids: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """LM-head logits from final hidden states ``[..., d]``: for all tokens, or only ``token_ids`` ``[K]``.

        Scoring a few answer tokens (A/B letters, rating digits) this way multiplies by K rows
        of the head instead of the whole vocabulary. Final-logit soft-capping is applied.
        """
        head = self.model.get_output_embeddings()
        w, bias = head.weight, getattr(head, "bias", None)
        if token_ids is not None:
            ids = torch.as_tensor(token_ids, device=w.device)
            w, bias = w[ids], None if bias is None else bias[ids]
        return self._head(h, w, bias, refine_top=token_ids is None)

    def vocab_logsumexp(self, h: torch.Tensor, *, chunk: int = 16384) -> torch.Tensor:
        """``log Σ_v exp(logit_v)`` over the whole vocabulary for hidden states ``[..., d]`` → ``[...]`` float32.

        The softmax normaliser without the full logits: the head is read ``chunk`` vocabulary
        rows at a time for all hidden states at once (a running log-sum-exp), so its weight
        (262k × 640 floats for Gemma 3) is read once per call and at most rows × ``chunk``
        logits exist at a time. Equals ``logits_for(h).logsumexp(-1)``.
        """
        head = self.model.get_output_embeddings()
        w, bias = head.weight, getattr(head, "bias", None)
        x = h.reshape(-1, h.shape[-1])
        total: torch.Tensor | None = None
        with torch.inference_mode():
            for j in range(0, w.shape[0], chunk):
                part = self._head(x, w[j : j + chunk], None if bias is None else bias[j : j + chunk])
                lse = torch.logsumexp(part.float(), dim=-1)
                total = lse if total is None else torch.logaddexp(total, lse)
        assert total is not None
        return total.reshape(h.shape[:-1])

    def _head(
        self, h: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, *, refine_top: bool = False
    ) -> torch.Tensor:
        """``h @ wᵀ (+ bias)`` with the model's final-logit soft-capping.

        In a bf16/fp16 model a slice of at most ``_FP32_HEAD_ROWS`` rows (the A/B letters, rating
        digits of :meth:`logits_for` with ``token_ids``) is multiplied in float32: a bf16 logit
        near 20 is rounded to a step of 0.125, as large as the logit differences these scores
        compare, and upcasting a few rows costs nothing. The full head runs in the model's dtype
        (its kernels accumulate in fp32); with ``refine_top`` its logits come back as float32 with
        each position's top rows recomputed in float32 (:func:`fp32_top_logits`).
        """
        if is_half(w) and w.shape[0] <= _FP32_HEAD_ROWS:
            w, bias = w.float(), None if bias is None else bias.float()
        logits = h.to(w.dtype) @ w.T
        if bias is not None:
            logits = logits + bias
        if refine_top and is_half(w):
            logits = fp32_top_logits(h, w, logits, bias)
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def next_token_logits(
        self,
        prompts: Sequence[str | Conversation],
        token_ids: Sequence[int],
        *,
        system: str | None = None,
        interventions: Sequence[Intervention] = (),
    ) -> torch.Tensor:
        """Logits of selected tokens at the next position ``[N, K]`` — never the full vocabulary."""
        ids = torch.as_tensor(list(token_ids), device=self.device)
        rows = []
        for batch in self._batches([self.format(p, system) for p in prompts]):
            h = self.hidden_states(batch, interventions)[:, -1]
            with torch.inference_mode():
                rows.append(self.logits_for(h, ids).float().cpu())
        return torch.cat(rows)

    def option_logprobs(
        self,
        conversations: Sequence[str | Conversation],
        options: Sequence[str],
        *,
        exact: bool = False,
        system: str | None = None,
        interventions: Sequence[Intervention] = (),
        batch_size: int | None = None,
    ) -> list[dict[str, float]]:
        """Per conversation, ``{option: log P(reply starts with option)}`` from one forward pass
        (:class:`~steerlab.models.backend.OptionScorer`; how: :mod:`steerlab.models.option_scores`).

        ``exact=True`` scores every option as a whole word ("1" is not "10", "15" or "1st").
        """
        from steerlab.models.option_scores import option_logprobs

        return option_logprobs(
            self, conversations, options, exact=exact, system=system, interventions=interventions, batch_size=batch_size
        )

    def _batches(self, texts: Sequence[str]) -> Iterator[Batch]:
        for i in range(0, len(texts), self.batch_size):
            yield self.tokenize(texts[i : i + self.batch_size])

    def continuation_logprobs(
        self,
        conversations: Sequence[str | Conversation],
        continuations: Sequence[str],
        *,
        interventions: Sequence[Intervention] = (),
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
                with torch.inference_mode():
                    lp = torch.log_softmax(self.logits_for(hh).float(), dim=-1)
                out.append(lp[torch.arange(n), torch.tensor(c, device=lp.device)].cpu().tolist())
        return out

    # ---- generation --------------------------------------------------------------------
    def stop_strings(self) -> tuple[str, ...]:
        """Strings that end the assistant's turn beyond the tokenizer's end-of-sequence tokens.

        The plain format (no chat template) has no end token: a base model goes on to write the
        next ``User:`` turn, so its reply ends there. A chat template ends the turn with its own
        end token, which Hugging Face's ``generate`` already stops on.
        """
        from steerlab.models.chat import PLAIN_ASSISTANT, PLAIN_USER

        return () if self.chat.uses_template else ("\n" + PLAIN_USER.strip(), "\n" + PLAIN_ASSISTANT)

    def generate(self, conversations: Sequence[str | Conversation], **kwargs: Any) -> list[str]:
        """Generate one reply per prompt: the texts of :meth:`complete` (same arguments)."""
        return [c.text for c in self.complete(conversations, **kwargs)]

    def complete(
        self,
        conversations: Sequence[str | Conversation],
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        seed: int | Sequence[int] | None = None,
        system: str | None = None,
        interventions: Sequence[Intervention] = (),
        batch_size: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        stop: Sequence[str] = (),
        top_p: float = 1.0,
        top_k: int = 0,
        formatted: bool = False,
        logits_processors: Sequence[Any] = (),
    ) -> list[Completion]:
        """Generate one reply per prompt, with its finish reason and token counts.

        Args:
            conversations: user messages (str) or conversations.
            max_new_tokens: most tokens per reply.
            temperature: 0 = greedy; > 0 samples, each row from its own seeded stream.
            seed: one int (row ``i`` gets ``seed + i``), one per prompt, or None (fresh seeds).
                A sampled row depends only on its own prompt, interventions and seed.
            system: a system prompt for every conversation.
            interventions: applied for this call only. Per-row values (a strength or vector
                per row) need ``batch_size`` equal to the number of prompts.
            batch_size: rows per forward pass (default: the model's).
            progress: called as ``progress(done, total)`` after each batch.
            stop: extra stop strings (the reply is cut before them).
            top_p, top_k: nucleus / top-k filtering when sampling (1.0 / 0 = off).
            formatted: the prompts are already formatted text (e.g. raw text completion): no chat
                formatting and no implicit stop strings (only end-of-sequence and ``stop``).
            logits_processors: Hugging Face ``LogitsProcessor`` objects run on each step's raw
                logits before sampling (e.g. to record log-probabilities or stream tokens); they
                must return the scores unchanged to leave decoding as it is.

        Rows stop at the end-of-sequence token, at a stop string (see :meth:`stop_strings`), or
        after ``max_new_tokens``; a batch ends when all its rows have stopped.
        """
        import math

        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
            raise InputError(f"temperature must be a finite number >= 0, got {temperature!r}")
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if not 0 < top_p <= 1:
            raise InputError(f"top_p must be in (0, 1], got {top_p}")
        if formatted and (system or not all(isinstance(c, str) for c in conversations)):
            raise InputError("complete(formatted=True) takes prompt texts and no system prompt")
        texts = list(conversations) if formatted else [self.format(c, system) for c in conversations]
        try:
            seeds = row_seeds(seed, len(texts)) if temperature > 0 else [0] * len(texts)
        except ValueError as e:
            raise InputError(str(e)) from None
        stops = tuple(stop) if formatted else (*self.stop_strings(), *stop)
        bs = batch_size or self.batch_size
        out: list[Completion] = []
        for i in range(0, len(texts), bs):
            batch = self.tokenize(texts[i : i + bs])
            out.extend(
                self._generate_batch(
                    batch,
                    max_new_tokens,
                    temperature,
                    seeds[i : i + bs],
                    interventions,
                    stops,
                    top_p,
                    top_k,
                    logits_processors,
                )
            )
            if progress is not None:
                progress(len(out), len(texts))
        return out

    def _eos_ids(self) -> set[int]:
        ids = getattr(self.model.generation_config, "eos_token_id", None)
        if ids is None:
            ids = self.tokenizer.eos_token_id
        return set(ids if isinstance(ids, (list, tuple)) else [] if ids is None else [ids])

    def _generate_batch(
        self,
        batch: Batch,
        max_new_tokens: int,
        temperature: float,
        seeds: Sequence[int],
        interventions: Sequence[Intervention],
        stops: Sequence[str],
        top_p: float,
        top_k: int,
        logits_processors: Sequence[Any] = (),
    ) -> list[Completion]:
        from transformers import LogitsProcessorList, StoppingCriteriaList

        width = batch.input_ids.shape[1]
        stopper = StopOnStrings(self.tokenizer, stops, width)
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "do_sample": False,
            "temperature": None,
            "top_p": None,
            "top_k": None,
            "stopping_criteria": StoppingCriteriaList([stopper]),
        }
        processors = list(logits_processors)
        if temperature > 0:
            processors.append(SeededSampler(seeds, temperature, max_new_tokens, top_k=top_k, top_p=top_p))
        if processors:
            kwargs["logits_processor"] = LogitsProcessorList(processors)
        with self.session(interventions, batch.prompt_len), fp32_top_head(self.model):
            out = self.model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **kwargs)
        eos = self._eos_ids()
        results = []
        for row in range(out.shape[0]):
            new = out[row, width:].tolist()
            n = stopper.stop_step.get(row, len(new))
            hit_eos = next((j for j, t in enumerate(new[:n]) if t in eos), None)
            if hit_eos is not None:
                n = hit_eos + 1
            text, hit_stop = cut_at_stops(self.tokenizer.decode(new[:n], skip_special_tokens=True), stops)
            reason: FinishReason = "stop" if hit_eos is not None or hit_stop else "length"
            results.append(Completion(text.strip(), reason, int(batch.prompt_len[row]), n, tuple(new[:n])))
        return results
