"""The OpenAI-compatible HTTP API of ``steerlab serve`` (FastAPI).

Routes: ``GET /health`` (no key needed), ``GET /v1/models``, ``GET /v1/models/{name}``,
``POST /v1/chat/completions``, ``POST /v1/completions`` and ``GET /v1/steerlab/stats`` (what the
batcher did). Every error is a JSON body ``{"error": {"message", "type", "param", "code"}}``
with a 4xx/5xx status, as OpenAI's, so the official client raises the matching exception.

A request becomes rows (one per prompt × ``n``); rows are queued to the
:class:`~steerlab.serve.batcher.Batcher`, which runs requests that arrive together as one
batch; replies are built from the core's :class:`~steerlab.models.backend.Completion` records
(true ``finish_reason``, token counts for ``usage``).

Example:
    >>> app = create_app(lm, vectors={"refusal": vec}, config=ServeConfig(model_names=("default",)))
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hmac
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from steerlab.errors import SteerlabError
from steerlab.models.sampling import cut_at_stops
from steerlab.serve.batcher import Batcher, QueueFull
from steerlab.serve.engine import Generator, GroupKey, RowJob, RowResult
from steerlab.serve.protocol import ChatRequest, CompletionRequest, RequestError, parse_request
from steerlab.serve.streaming import TextStream

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
    batch_wait_ms: float = 5.0
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


def _error(status: int, message: str, *, param: str | None = None, code: str | None = None) -> JSONResponse:
    kind = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error" if status < 500 else "server_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status)


class _Server:
    """What the routes share: the model, the generator, the batcher, the config."""

    def __init__(self, lm: "LanguageModel", vectors: Mapping[str, "SteeringVector"], config: ServeConfig) -> None:
        self.lm = lm
        self.config = config
        self.generator = Generator(lm, vectors)
        self.vectors = dict(vectors)
        self.batcher: Batcher[GroupKey, RowJob, RowResult] = Batcher(
            self.generator.run, max_batch=config.max_batch, wait_s=config.batch_wait_ms / 1000,
            max_queue=config.max_queue)
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
        raise RequestError(f"the model '{name}' does not exist; this server serves "
                           f"{', '.join(self.config.model_names)}", status=404, param="model",
                           code="model_not_found")

    def group_key(self, req: ChatRequest | CompletionRequest, stops: Sequence[str]) -> GroupKey:
        cfg = self.config
        limit = req.token_limit()
        max_tokens = int(cfg.default_max_tokens if limit is None else limit)  # type: ignore[arg-type]
        if max_tokens > cfg.max_tokens:
            raise RequestError(f"max_tokens {max_tokens} is more than this server allows ({cfg.max_tokens})",
                               param="max_tokens")
        if req.n > cfg.max_n:
            raise RequestError(f"n={req.n} is more than this server allows ({cfg.max_n})", param="n")
        if len(req.stops()) > cfg.max_stop:
            raise RequestError(f"{len(req.stops())} stop strings; this server allows {cfg.max_stop}", param="stop")
        top_k = 0 if req.top_k == -1 else req.top_k
        return GroupKey(max_tokens, float(req.temperature), float(req.top_p), top_k, tuple(stops))

    def steer_spec(self, req: ChatRequest | CompletionRequest) -> Any:
        from steerlab.experiments.records import NO_INTERVENTION, InterventionSpec

        s = req.steer
        if s is None:
            return NO_INTERVENTION
        if s.vector not in self.vectors:
            known = ", ".join(sorted(self.vectors)) or "none (start the server with --vector NAME=FILE)"
            raise RequestError(f"steer.vector: no vector named '{s.vector}'; this server has {known}",
                               param="steer.vector")
        if isinstance(s.layers, list):
            bad = [x for x in s.layers if not -self.lm.n_layers <= x < self.lm.n_layers]
            if bad:
                raise RequestError(f"steer.layers: {bad} out of range for a model with {self.lm.n_layers} layers",
                                   param="steer.layers")
        try:
            from steerlab.interventions.positions import parse_positions

            parse_positions(s.positions)
            return InterventionSpec(kind=s.kind, vector=s.vector, layers=s.layers, site=s.site,
                                    positions=s.positions, strength=s.strength or 0.0)
        except (SteerlabError, ValueError) as e:
            raise RequestError(f"steer: {e}", param="steer") from None

    def prompt_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=not self.lm.chat.uses_template)["input_ids"])

    def check_context(self, texts: Sequence[str], max_tokens: int) -> list[int]:
        counts = [self.prompt_tokens(t) for t in texts]
        if self.config.check_context and self.context and max(counts) + max_tokens > self.context:
            raise RequestError(f"the prompt ({max(counts)} tokens) plus max_tokens ({max_tokens}) exceeds the "
                               f"model's context of {self.context} tokens", param="max_tokens",
                               code="context_length_exceeded")
        return counts

    # ---- rows ----------------------------------------------------------------------------------
    def rows(self, texts: Sequence[str], req: ChatRequest | CompletionRequest, sinks: Sequence[Any] | None,
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

        return {"content": [{**entry(t.token_id, t.logprob), "top_logprobs": [entry(i, v) for i, v in t.top]}
                            for t in r.logprobs], "refusal": None}

    def text_logprobs(self, r: RowResult) -> dict[str, Any] | None:
        if r.logprobs is None:
            return None
        tokens = [self.token_text(t.token_id) for t in r.logprobs]
        offsets, pos = [], 0
        for tok in tokens:
            offsets.append(pos)
            pos += len(tok)
        return {"tokens": tokens, "token_logprobs": [t.logprob for t in r.logprobs],
                "top_logprobs": [{self.token_text(i): v for i, v in t.top} for t in r.logprobs],
                "text_offset": offsets}

    @staticmethod
    def usage(prompt_counts: Sequence[int], results: Sequence[RowResult]) -> dict[str, int]:
        prompt = sum(prompt_counts)
        completion = sum(r.completion.completion_tokens for r in results)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def create_app(lm: "LanguageModel", *, vectors: Mapping[str, "SteeringVector"] | None = None,
               config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI application serving ``lm`` (start it with uvicorn, or :func:`start_server`).

    Args:
        lm: the loaded model.
        vectors: the vectors requests may name (check them with ``check_compatible`` first).
        config: limits and options (default: the model's id as its name, default limits).
    """
    state = _Server(lm, vectors or {}, config or ServeConfig(model_names=(lm.model_id,)))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.batcher.start()
        try:
            yield
        finally:
            await state.batcher.stop()

    app = FastAPI(title="steerlab serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.steerlab = state

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, e: RequestError) -> JSONResponse:
        return _error(e.status, str(e), param=e.param, code=e.code)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        detail = e.detail if isinstance(e.detail, str) else "error"
        if e.status_code == 404:
            detail = f"no route {request.method} {request.url.path}"
        return _error(e.status_code, detail)

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(e).__name__}: {e}")

    if state.config.api_key:
        app.add_middleware(_RequireKey, key=state.config.api_key)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    def model_card(name: str) -> dict[str, Any]:
        vecs = [{"name": n, "layer": v.layer, "site": v.site} for n, v in sorted(state.vectors.items())]
        return {"id": name, "object": "model", "created": state.created, "owned_by": "steerlab",
                "steerlab": {"model_id": lm.model_id, "n_layers": lm.n_layers, "hidden_size": lm.hidden_size,
                             "vectors": vecs}}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card(n) for n in state.config.model_names]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str) -> dict[str, Any]:
        return model_card(state.check_model(name))

    @app.get("/v1/steerlab/stats")
    async def stats() -> dict[str, Any]:
        return {**state.batcher.stats.to_json(), "queued_rows": state.batcher.queued_rows()}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        req: ChatRequest = parse_request(ChatRequest, await _read_json(request, state.config.max_request_bytes))
        name = state.check_model(req.model)
        conv = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages]
        try:
            text = lm.format(conv)
        except Exception as e:  # noqa: BLE001 - a chat template that rejects this conversation
            raise RequestError(f"messages: the model's chat template rejects this conversation ({e})") from None
        stops = (*lm.stop_strings(), *req.stops())
        key = state.group_key(req, stops)
        counts = state.check_context([text], key.max_tokens)
        if req.stream:
            if req.logprobs:
                raise RequestError("logprobs with stream=true is not supported; ask without stream", param="logprobs")
            return _stream(state, "chat.completion.chunk", name, req, key, [text], counts, strip=True)
        results = await state.generate(key, state.rows([text], req, None))
        choices = [{"index": j, "message": {"role": "assistant", "content": r.completion.text},
                    "logprobs": state.chat_logprobs(r), "finish_reason": r.completion.finish_reason}
                   for j, r in enumerate(results)]
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": name, "system_fingerprint": state.fingerprint, "choices": choices,
                "usage": state.usage(counts, results)}

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        req: CompletionRequest = parse_request(CompletionRequest, await _read_json(request,
                                                                                    state.config.max_request_bytes))
        name = state.check_model(req.model)
        prompts = req.prompts()
        if len(prompts) * req.n > state.config.max_n:
            raise RequestError(f"{len(prompts)} prompts × n={req.n} is more than this server allows in one "
                               f"request ({state.config.max_n})", param="prompt")
        key = state.group_key(req, req.stops())
        counts = state.check_context(prompts, key.max_tokens)
        if req.stream:
            if req.logprobs is not None:
                raise RequestError("logprobs with stream=true is not supported; ask without stream", param="logprobs")
            return _stream(state, "text_completion", name, req, key, prompts, counts, strip=False)
        results = await state.generate(key, state.rows(prompts, req, None))
        choices = [{"index": i, "text": state.raw_text(r.completion, key.stops),
                    "logprobs": state.text_logprobs(r), "finish_reason": r.completion.finish_reason}
                   for i, r in enumerate(results)]
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": name, "system_fingerprint": state.fingerprint, "choices": choices,
                "usage": state.usage(counts, results)}

    return app


class _RequireKey:
    """ASGI middleware: ``/v1`` routes need ``Authorization: Bearer <key>`` (401 otherwise)."""

    def __init__(self, app: Any, key: str) -> None:
        self.app = app
        self.key = key.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1"):
            sent = dict(scope["headers"]).get(b"authorization", b"")
            token = sent[7:] if sent[:7].lower() == b"bearer " else b""
            if not hmac.compare_digest(token, self.key):
                response = _error(401, "invalid or missing API key (send 'Authorization: Bearer <key>')",
                                  code="invalid_api_key")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _read_json(request: Request, limit: int) -> Any:
    """The request body as JSON, refusing bodies over ``limit`` bytes (413) and malformed JSON (400)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"the request body ({declared} bytes) is larger than this server allows ({limit})",
                           status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"the request body is larger than this server allows ({limit} bytes)", status=413)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise RequestError("the request body is empty; send a JSON object")

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        return json.loads(raw, parse_constant=no_constants)
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(f"the request body is not valid JSON ({e})") from None


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def _stream(state: _Server, obj: str, name: str, req: ChatRequest | CompletionRequest, key: GroupKey,
            texts: Sequence[str], counts: Sequence[int], *, strip: bool) -> StreamingResponse:
    """A server-sent-event stream of chunks; its deltas join to the non-streamed reply."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue()
    n_rows = len(texts) * req.n
    streams = [TextStream(state.tokenizer, key.stops, strip=strip, eos_ids=state.eos) for _ in range(n_rows)]

    def sink(i: int) -> Any:
        return lambda tok: loop.call_soon_threadsafe(queue.put_nowait, (i, tok))

    rows = state.rows(texts, req, [sink(i) for i in range(n_rows)])
    ident = f"{'chatcmpl' if strip else 'cmpl'}-{uuid.uuid4().hex}"
    created = int(time.time())

    def chunk(i: int, text: str | None, finish: str | None, first: bool = False) -> dict[str, Any]:
        if strip:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else (
                {} if text is None else {"content": text})
            choice: dict[str, Any] = {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": i, "text": text or "", "logprobs": None, "finish_reason": finish}
        return {"id": ident, "object": obj, "created": created, "model": name,
                "system_fingerprint": state.fingerprint, "choices": [choice]}

    async def events() -> AsyncIterator[str]:
        task = asyncio.ensure_future(state.generate(key, rows))
        task.add_done_callback(lambda _: loop.call_soon_threadsafe(queue.put_nowait, None))
        try:
            if strip:
                for i in range(n_rows):
                    yield _sse(chunk(i, None, None, first=True))
            while True:
                item = await queue.get()
                if item is None:
                    break
                i, tok = item
                delta = streams[i].push(tok)
                if delta:
                    yield _sse(chunk(i, delta, None))
            try:
                results = task.result()
            except RequestError as e:
                yield _sse({"error": {"message": str(e), "type": "invalid_request_error", "param": e.param,
                                      "code": e.code}})
                return
            except Exception as e:  # noqa: BLE001 - reported in the stream, which has already begun
                yield _sse({"error": {"message": f"internal error: {type(e).__name__}: {e}", "type": "server_error",
                                      "param": None, "code": None}})
                return
            for i, r in enumerate(results):
                final = r.completion.text if strip else state.raw_text(r.completion, key.stops)
                rest = streams[i].finish(final)
                if rest:
                    yield _sse(chunk(i, rest, None))
                yield _sse(chunk(i, None, r.completion.finish_reason))
            if req.stream_options is not None and req.stream_options.include_usage:
                yield _sse({"id": ident, "object": obj, "created": created, "model": name, "choices": [],
                            "usage": state.usage(counts, results)})
            yield "data: [DONE]\n\n"
        finally:
            if not task.done():
                task.cancel()

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
