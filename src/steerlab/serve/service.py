"""The model service behind ``steerlab serve``'s routes: configuration, request checks, rows, replies.

:class:`ServeConfig` says what the server accepts; :class:`Service` checks a validated request
against it and the model (model name, limits, context length, steering spec), turns it into
rows for the :class:`~steerlab.serve.batcher.Batcher` (one per prompt and choice, with seeds),
and turns finished rows into the parts of OpenAI-shaped replies (log-probabilities, usage).
HTTP itself (routes, errors, streaming) is in :mod:`steerlab.serve.app`.
"""

from __future__ import annotations

import asyncio
import copy
import math
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from steerlab.errors import SteerlabError
from steerlab.models.sampling import cut_at_stops
from steerlab.serve.batcher import Batcher, QueueFull
from steerlab.serve.engine import Generator, GroupKey, RowJob, RowResult, Ticket
from steerlab.serve.protocol import ChatRequest, CompletionRequest, RequestError, SteerSpec

if TYPE_CHECKING:
    from steerlab.models.hf import LanguageModel
    from steerlab.vectors.vector import SteeringVector


@dataclass(frozen=True)
class ServeConfig:
    """How the server behaves and what it bounds.

    Attributes:
        model_names: names a request's ``model`` may use; the first is listed by ``/v1/models``.
        any_model_name: accept any ``model`` (the in-process test helper does, so tests can name
            a stand-in freely); the command line does not.
        api_key: when set, every ``/v1`` request must send ``Authorization: Bearer <key>``.
        max_request_bytes: largest request body.
        max_tokens: largest ``max_tokens`` a request may ask for.
        default_max_tokens: ``max_tokens`` when a request gives none (None: 256, or
            ``max_tokens`` if that is smaller).
        max_n: largest ``n`` (and largest number of prompts × n in one completions request).
        max_batch: most rows in one forward pass.
        batch_wait_ms: how long a request waits for batch-mates.
        max_queue: most rows waiting; beyond, requests get 429.
        max_stop: most stop strings per request.
        check_context: refuse a prompt whose tokens plus ``max_tokens`` exceed the model's
            ``max_position_embeddings`` (400, as vLLM does).
        max_prompt_tokens: most tokens in one prompt (400 ``context_length_exceeded``); None =
            only the context bounds it.
        request_timeout_s: a request not answered this long after it arrived fails (503,
            code ``timeout``) and its rows leave the batch; None = no deadline.
        read_timeout_s: time a client has to send a request's headers, and its body (the
            connection is closed, or 408); None = no limit.
        presets: extra model names that steer every request as the given ``steer`` would
            (listed by ``/v1/models``; a request naming one may not send its own ``steer``).
        allowed_hosts: with no ``api_key``, the ``Host`` (and ``Origin``, when sent) of a request
            must name one of these (besides loopback names), against DNS rebinding; None =
            no check (the in-process test helper's default is the check on).
    """

    model_names: tuple[str, ...]
    any_model_name: bool = False
    api_key: str | None = None
    max_request_bytes: int = 1_000_000
    max_tokens: int = 1024
    default_max_tokens: int | None = None
    max_n: int = 8
    max_batch: int = 16
    batch_wait_ms: float = 20.0
    max_queue: int = 256
    max_stop: int = 4
    check_context: bool = True
    max_prompt_tokens: int | None = None
    request_timeout_s: float | None = 120.0
    read_timeout_s: float | None = 10.0
    presets: Mapping[str, SteerSpec] = field(default_factory=dict)
    allowed_hosts: tuple[str, ...] | None = ()

    def __post_init__(self) -> None:
        if not self.model_names:
            raise ValueError("ServeConfig needs at least one model name")
        if self.default_max_tokens is None:
            object.__setattr__(self, "default_max_tokens", min(256, self.max_tokens))
        for name in ("max_request_bytes", "max_tokens", "default_max_tokens", "max_n", "max_batch", "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.default_max_tokens > self.max_tokens:  # type: ignore[operator]
            raise ValueError("default_max_tokens must not exceed max_tokens")
        if self.max_n > self.max_batch:
            raise ValueError(f"max_n ({self.max_n}) must not exceed max_batch ({self.max_batch})")
        if self.batch_wait_ms < 0:
            raise ValueError("batch_wait_ms must be >= 0")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ValueError("max_prompt_tokens must be at least 1")
        for name in ("request_timeout_s", "read_timeout_s"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 (or None)")
        clash = set(self.presets) & set(self.model_names)
        if clash:
            raise ValueError(f"preset names {sorted(clash)} are already model names")


class Service:
    """What the routes share: the model, its vectors, the batcher and the config; request checks,
    rows, and the pieces of OpenAI-shaped replies."""

    def __init__(self, lm: LanguageModel, vectors: Mapping[str, SteeringVector], config: ServeConfig) -> None:
        self.lm = lm
        self.config = config
        unknown = {n: p.vector for n, p in config.presets.items() if p.vector not in vectors}
        if unknown:
            raise ValueError(f"presets name vectors that are not loaded: {unknown}")
        self.generator = Generator(lm, vectors)
        self.vectors = dict(vectors)
        self.batcher: Batcher[GroupKey, RowJob, RowResult] = Batcher(
            self.generator.run,
            max_batch=config.max_batch,
            wait_s=config.batch_wait_ms / 1000,
            max_queue=config.max_queue,
        )
        self.created = int(time.time())
        self.context = int(getattr(lm.model.config, "max_position_embeddings", 0) or 0)
        self.eos = sorted(lm._eos_ids())
        # The model thread tokenizes batches with padding, which reconfigures a fast tokenizer in
        # place; the event loop (prompt counts, streaming, token texts) gets its own copy.
        self.tokenizer = copy.deepcopy(lm.tokenizer)
        from steerlab import __version__

        self.fingerprint = f"steerlab-{__version__}-{lm.config_hash}"
        self.tickets: set[Ticket] = set()  # the tickets of requests waiting for their rows
        self.shutting_down = False

    # ---- checks ------------------------------------------------------------------------------
    def check_model(self, name: str) -> str:
        if name in self.config.model_names or name in self.config.presets or self.config.any_model_name:
            return name
        served = ", ".join([*self.config.model_names, *self.config.presets])
        raise RequestError(
            f"the model '{name}' does not exist; this server serves {served}",
            status=404,
            param="model",
            code="model_not_found",
        )

    def group_key(self, req: ChatRequest | CompletionRequest, stops: Sequence[str]) -> GroupKey:
        cfg = self.config
        limit = req.token_limit()
        max_tokens = int(cfg.default_max_tokens if limit is None else limit)  # type: ignore[arg-type]
        if max_tokens > cfg.max_tokens:
            raise RequestError(
                f"max_tokens {max_tokens} is more than this server allows ({cfg.max_tokens})", param="max_tokens"
            )
        if req.n > cfg.max_n:
            raise RequestError(f"n={req.n} is more than this server allows ({cfg.max_n})", param="n")
        if len(req.stops()) > cfg.max_stop:
            raise RequestError(f"{len(req.stops())} stop strings; this server allows {cfg.max_stop}", param="stop")
        top_k = 0 if req.top_k == -1 else req.top_k
        return GroupKey(max_tokens, float(req.temperature), float(req.top_p), top_k, tuple(stops))

    def steer_spec(self, req: ChatRequest | CompletionRequest) -> Any:
        from steerlab.interventions.spec import NO_INTERVENTION, InterventionSpec

        s = req.steer
        preset = self.config.presets.get(req.model)
        if preset is not None:
            if s is not None:
                raise RequestError(
                    f"the model '{req.model}' is a steering preset; send steer with the base model "
                    f"({self.config.model_names[0]}) instead",
                    param="steer",
                )
            s = preset
        if s is None:
            return NO_INTERVENTION
        if s.vector not in self.vectors:
            known = ", ".join(sorted(self.vectors)) or "none (start the server with --vector NAME=FILE)"
            raise RequestError(
                f"steer.vector: no vector named '{s.vector}'; this server has {known}", param="steer.vector"
            )
        if isinstance(s.layers, list):
            bad = [x for x in s.layers if not -self.lm.n_layers <= x < self.lm.n_layers]
            if bad:
                raise RequestError(
                    f"steer.layers: {bad} out of range for a model with {self.lm.n_layers} layers", param="steer.layers"
                )
        try:
            from steerlab.interventions.positions import parse_positions

            parse_positions(s.positions)
            return InterventionSpec(
                kind=s.kind,
                vector=s.vector,
                layers=s.layers,
                site=s.site,
                positions=s.positions,
                strength=s.strength or 0.0,
            )
        except (SteerlabError, ValueError) as e:
            raise RequestError(f"steer: {e}", param="steer") from None

    def encode(self, text: str) -> list[int]:
        """A formatted prompt's token ids, as ``LanguageModel.tokenize`` makes them."""
        return list(self.tokenizer(text, add_special_tokens=not self.lm.chat.uses_template)["input_ids"])

    def check_prompts(self, prompts: Sequence[str] | Sequence[Sequence[int]], max_tokens: int) -> list[list[int]]:
        """Each prompt's token ids (texts are tokenized; ids are checked), within the bounds."""
        vocab = len(self.tokenizer)
        ids: list[list[int]] = []
        for p in prompts:
            if isinstance(p, str):
                ids.append(self.encode(p))
                continue
            bad = [t for t in p if not 0 <= t < vocab]
            if bad:
                raise RequestError(
                    f"prompt: token ids {bad[:5]} are outside the vocabulary (0..{vocab - 1})", param="prompt"
                )
            ids.append(list(p))
        if any(not q for q in ids):
            raise RequestError("the prompt is empty (no tokens)", param="prompt")
        longest = max(len(q) for q in ids)
        limit = self.config.max_prompt_tokens
        if limit is not None and longest > limit:
            raise RequestError(
                f"the prompt has {longest} tokens; this server allows at most {limit} (--max-prompt-tokens)",
                param="prompt",
                code="context_length_exceeded",
            )
        if self.config.check_context and self.context and longest + max_tokens > self.context:
            raise RequestError(
                f"the prompt ({longest} tokens) plus max_tokens ({max_tokens}) exceeds the "
                f"model's context of {self.context} tokens",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return ids

    # ---- rows ----------------------------------------------------------------------------------
    def rows(
        self,
        prompts: Sequence[Sequence[int]],
        req: ChatRequest | CompletionRequest,
        sinks: Sequence[Any] | None,
        ticket: Ticket,
    ) -> list[RowJob]:
        """One row per prompt and sample: sample ``j`` of a request with seed ``s`` uses ``s + j``."""
        spec = self.steer_spec(req)
        echo = isinstance(req, CompletionRequest) and req.echo
        out = []
        for p, ids in enumerate(prompts):
            base = req.seed if req.seed is not None else secrets.randbelow(2**31)
            for j in range(req.n):
                i = p * req.n + j
                sink = sinks[i] if sinks else None
                out.append(RowJob(tuple(ids), base + j, spec, req.wanted_logprobs(), sink, ticket, echo))
        return out

    async def generate(self, key: GroupKey, rows: list[RowJob]) -> list[RowResult]:
        """Queue the rows and wait for them, within the request's deadline.

        If the caller is cancelled (the client went away) or the deadline passes, the rows'
        ticket is cancelled, so they leave the queue, or the running batch at its next step.
        """
        cfg = self.config
        if len(rows) > cfg.max_queue:
            raise RequestError(
                f"this request has {len(rows)} rows (prompts × n) and the server never queues more than "
                f"{cfg.max_queue} (--max-queue); send fewer",
                code="request_too_large",
            )
        if self.shutting_down:
            raise RequestError("the server is shutting down", status=503, code="shutting_down")
        ticket = rows[0].ticket
        self.tickets.add(ticket)
        try:
            results = await asyncio.wait_for(self.batcher.submit(key, rows), cfg.request_timeout_s)
        except QueueFull as e:
            raise RequestError(
                f"the server is busy: {e}; retry later", status=429, retry_after=self.retry_after()
            ) from None
        except asyncio.TimeoutError:
            ticket.cancel()
            raise RequestError(
                f"the request took longer than this server allows ({cfg.request_timeout_s:g} s, "
                "--request-timeout); ask for fewer tokens",
                status=503,
                code="timeout",
            ) from None
        except asyncio.CancelledError:
            ticket.cancel()
            raise
        except SteerlabError as e:  # e.g. a strength so large the activations overflow
            raise RequestError(str(e)) from None
        finally:
            self.tickets.discard(ticket)
        if any(r.cancelled for r in results):  # only shutdown cancels a ticket whose caller still waits
            raise RequestError("the server is shutting down", status=503, code="shutting_down")
        return results

    def retry_after(self) -> int:
        """Seconds a refused client should wait: about one batch's time (at least 1)."""
        return max(1, math.ceil(self.batcher.stats.mean_seconds()))

    def abort_all(self) -> None:
        """Shutdown: refuse new requests and end every running or queued one at its next step."""
        self.shutting_down = True
        for t in list(self.tickets):
            t.cancel()

    # ---- replies -------------------------------------------------------------------------------
    def token_text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def raw_text(self, completion: Any, stops: Sequence[str]) -> str:
        """The reply as generated (not stripped), cut before the first stop string: ``/v1/completions``."""
        text = self.tokenizer.decode(list(completion.token_ids), skip_special_tokens=True)
        return cut_at_stops(text, stops)[0]

    def chat_text(self, completion: Any) -> str:
        """The chat reply: a reply cut by ``max_tokens`` loses a trailing start of the next turn.

        A base model in the plain format writes the next ``User:`` turn after its reply; the
        stop string ends the reply there, but ``max_tokens`` can cut it first, leaving e.g.
        ``"...\nUser"``. That tail (a newline and at least two letters of an implicit stop
        string, so a reply ending in a new line that starts with "U" keeps it) is dropped.
        """
        text = str(completion.text)
        if completion.finish_reason != "length":
            return text
        raw = self.tokenizer.decode(list(completion.token_ids), skip_special_tokens=True)
        for stop in self.lm.stop_strings():
            tail = next((stop[:k] for k in range(len(stop) - 1, 2, -1) if raw.endswith(stop[:k])), None)
            if tail is not None:
                return raw[: len(raw) - len(tail)].strip()
        return text

    def chat_logprobs(self, r: RowResult) -> dict[str, Any] | None:
        if r.logprobs is None:
            return None

        def entry(tid: int, lp: float) -> dict[str, Any]:
            tok = self.token_text(tid)
            return {"token": tok, "logprob": lp, "bytes": list(tok.encode("utf-8"))}

        return {
            "content": [
                {**entry(t.token_id, t.logprob), "top_logprobs": [entry(i, v) for i, v in t.top]} for t in r.logprobs
            ],
            "refusal": None,
        }

    def text_logprobs(self, r: RowResult, prompt: Sequence[int] | None = None) -> dict[str, Any] | None:
        """Completions' ``logprobs``; with ``prompt`` (echo), the prompt tokens come first, the
        first with ``null`` log-probability and ``null`` alternatives (nothing predicts it)."""
        if r.logprobs is None:
            return None
        ids: list[int] = []
        lps: list[float | None] = []
        tops: list[dict[str, float] | None] = []
        if prompt is not None:
            echoed = r.prompt_logprobs or ()
            for tid, e in zip(prompt, echoed):
                ids.append(tid)
                lps.append(None if e is None else e.logprob)
                tops.append(None if e is None else {self.token_text(i): v for i, v in e.top})
        for t in r.logprobs:
            ids.append(t.token_id)
            lps.append(t.logprob)
            tops.append({self.token_text(i): v for i, v in t.top})
        tokens = [self.token_text(i) for i in ids]
        offsets, pos = [], 0
        for tok in tokens:
            offsets.append(pos)
            pos += len(tok)
        return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}

    @staticmethod
    def usage(prompt_counts: Sequence[int], results: Sequence[RowResult]) -> dict[str, int]:
        prompt = sum(prompt_counts)
        completion = sum(r.completion.completion_tokens for r in results)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
