"""The model service behind ``steerlab serve``'s routes: configuration, request checks, rows, replies.

:class:`ServeConfig` says what the server accepts; :class:`Service` checks a validated request
against it and the model (model name, limits, context length, steering spec), turns it into
rows for the :class:`~steerlab.serve.batcher.Batcher` (one per prompt and choice, with seeds),
and turns finished rows into the parts of OpenAI-shaped replies (log-probabilities, usage).
HTTP itself (routes, errors, streaming) is in :mod:`steerlab.serve.app`.
"""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from steerlab.errors import SteerlabError
from steerlab.models.sampling import cut_at_stops
from steerlab.serve.batcher import Batcher, QueueFull
from steerlab.serve.engine import Generator, GroupKey, RowJob, RowResult
from steerlab.serve.protocol import ChatRequest, CompletionRequest, RequestError

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


class Service:
    """What the routes share: the model, its vectors, the batcher and the config; request checks,
    rows, and the pieces of OpenAI-shaped replies."""

    def __init__(self, lm: LanguageModel, vectors: Mapping[str, SteeringVector], config: ServeConfig) -> None:
        self.lm = lm
        self.config = config
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

    # ---- checks ------------------------------------------------------------------------------
    def check_model(self, name: str) -> str:
        if name in self.config.model_names or self.config.any_model_name:
            return name
        raise RequestError(
            f"the model '{name}' does not exist; this server serves {', '.join(self.config.model_names)}",
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

    def prompt_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=not self.lm.chat.uses_template)["input_ids"])

    def check_context(self, texts: Sequence[str], max_tokens: int) -> list[int]:
        counts = [self.prompt_tokens(t) for t in texts]
        if self.config.check_context and self.context and max(counts) + max_tokens > self.context:
            raise RequestError(
                f"the prompt ({max(counts)} tokens) plus max_tokens ({max_tokens}) exceeds the "
                f"model's context of {self.context} tokens",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return counts

    # ---- rows ----------------------------------------------------------------------------------
    def rows(
        self,
        texts: Sequence[str],
        req: ChatRequest | CompletionRequest,
        sinks: Sequence[Any] | None,
    ) -> list[RowJob]:
        """One row per prompt and sample: sample ``j`` of a request with seed ``s`` uses ``s + j``."""
        spec = self.steer_spec(req)
        out = []
        for p, text in enumerate(texts):
            base = req.seed if req.seed is not None else secrets.randbelow(2**31)
            for j in range(req.n):
                i = p * req.n + j
                out.append(RowJob(text, base + j, spec, req.wanted_logprobs(), sinks[i] if sinks else None))
        return out

    async def generate(self, key: GroupKey, rows: list[RowJob]) -> list[RowResult]:
        try:
            return await self.batcher.submit(key, rows)
        except QueueFull as e:
            raise RequestError(f"the server is busy: {e}; retry later", status=429) from None
        except SteerlabError as e:  # e.g. a strength so large the activations overflow
            raise RequestError(str(e)) from None

    # ---- replies -------------------------------------------------------------------------------
    def token_text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def raw_text(self, completion: Any, stops: Sequence[str]) -> str:
        """The reply as generated (not stripped), cut before the first stop string: ``/v1/completions``."""
        text = self.tokenizer.decode(list(completion.token_ids), skip_special_tokens=True)
        return cut_at_stops(text, stops)[0]

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

    def text_logprobs(self, r: RowResult) -> dict[str, Any] | None:
        if r.logprobs is None:
            return None
        tokens = [self.token_text(t.token_id) for t in r.logprobs]
        offsets, pos = [], 0
        for tok in tokens:
            offsets.append(pos)
            pos += len(tok)
        return {
            "tokens": tokens,
            "token_logprobs": [t.logprob for t in r.logprobs],
            "top_logprobs": [{self.token_text(i): v for i, v in t.top} for t in r.logprobs],
            "text_offset": offsets,
        }

    @staticmethod
    def usage(prompt_counts: Sequence[int], results: Sequence[RowResult]) -> dict[str, int]:
        prompt = sum(prompt_counts)
        completion = sum(r.completion.completion_tokens for r in results)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
