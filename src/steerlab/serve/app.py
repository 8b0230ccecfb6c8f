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
import hmac
import ipaddress
import json
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from steerlab.serve.engine import GroupKey, Ticket
from steerlab.serve.protocol import (
    ChatRequest,
    CompletionRequest,
    RequestError,
    parse_request,
)
from steerlab.serve.service import ServeConfig, Service
from steerlab.serve.streaming import TextStream

if TYPE_CHECKING:
    from steerlab.models.hf import LanguageModel
    from steerlab.vectors.vector import SteeringVector

Out = TypeVar("Out")


def _error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    retry_after: int | None = None,
) -> JSONResponse:
    kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error" if status < 500 else "server_error"
    )
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(
    lm: LanguageModel, *, vectors: Mapping[str, SteeringVector] | None = None, config: ServeConfig | None = None
) -> FastAPI:
    """The FastAPI application serving ``lm`` (start it with uvicorn, or :func:`start_server`).

    Args:
        lm: the loaded model.
        vectors: the vectors requests may name (check them with ``check_compatible`` first).
        config: limits and options (default: the model's id as its name, default limits).
    """
    state = Service(lm, vectors or {}, config or ServeConfig(model_names=(lm.model_id,)))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.batcher.start()
        try:
            yield
        finally:
            state.abort_all()
            await state.batcher.stop()

    app = FastAPI(title="steerlab serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.steerlab = state

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, e: RequestError) -> JSONResponse:
        return _error(e.status, str(e), param=e.param, code=e.code, retry_after=e.retry_after)

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
    elif state.config.allowed_hosts is not None:
        app.add_middleware(_LocalOnly, extra=state.config.allowed_hosts)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    def model_card(name: str) -> dict[str, Any]:
        vecs = [{"name": n, "layer": v.layer, "site": v.site} for n, v in sorted(state.vectors.items())]
        preset = state.config.presets.get(name)
        return {
            "id": name,
            "object": "model",
            "created": state.created,
            "owned_by": "steerlab",
            "steerlab": {
                "model_id": lm.model_id,
                "n_layers": lm.n_layers,
                "hidden_size": lm.hidden_size,
                "vectors": vecs,
                "preset": None if preset is None else preset.model_dump(exclude_none=True),
            },
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        names = [state.config.model_names[0], *state.config.presets]
        return {"object": "list", "data": [model_card(n) for n in names]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str) -> dict[str, Any]:
        return model_card(state.check_model(name))

    @app.get("/v1/steerlab/stats")
    async def stats() -> dict[str, Any]:
        return {**state.batcher.stats.to_json(), "queued_rows": state.batcher.queued_rows()}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        req: ChatRequest = parse_request(ChatRequest, await _read_json(request, state.config))
        name = state.check_model(req.model)
        conv = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages]
        try:
            text = lm.format(conv)
        except Exception as e:  # noqa: BLE001 - a chat template that rejects this conversation
            raise RequestError(f"messages: the model's chat template rejects this conversation ({e})") from None
        stops = (*lm.stop_strings(), *req.stops())
        key = state.group_key(req, stops)
        ids = state.check_prompts([text], key.max_tokens)
        if req.stream:
            if req.logprobs:
                raise RequestError("logprobs with stream=true is not supported; ask without stream", param="logprobs")
            return _stream(state, "chat.completion.chunk", name, req, key, ids, strip=True)
        results = await _unless_disconnected(request, state.generate(key, state.rows(ids, req, None, Ticket())))
        choices = [
            {
                "index": j,
                "message": {"role": "assistant", "content": state.chat_text(r.completion)},
                "logprobs": state.chat_logprobs(r),
                "finish_reason": r.completion.finish_reason,
            }
            for j, r in enumerate(results)
        ]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": name,
            "system_fingerprint": state.fingerprint,
            "choices": choices,
            "usage": state.usage([len(q) for q in ids], results),
        }

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        req: CompletionRequest = parse_request(CompletionRequest, await _read_json(request, state.config))
        name = state.check_model(req.model)
        prompts = req.prompts()
        if len(prompts) * req.n > state.config.max_n:
            raise RequestError(
                f"{len(prompts)} prompts × n={req.n} is more than this server allows in one "
                f"request ({state.config.max_n})",
                param="prompt",
            )
        key = state.group_key(req, req.stops())
        ids = state.check_prompts(prompts, key.max_tokens)
        if req.stream:
            if req.logprobs is not None:
                raise RequestError("logprobs with stream=true is not supported; ask without stream", param="logprobs")
            return _stream(state, "text_completion", name, req, key, ids, strip=False)
        results = await _unless_disconnected(request, state.generate(key, state.rows(ids, req, None, Ticket())))
        choices = []
        for i, r in enumerate(results):
            prompt = ids[i // req.n]
            text = state.raw_text(r.completion, key.stops)
            if req.echo:
                shown = prompts[i // req.n]
                text = (
                    shown if isinstance(shown, str) else state.tokenizer.decode(prompt, skip_special_tokens=True)
                ) + text
            choices.append(
                {
                    "index": i,
                    "text": text,
                    "logprobs": state.text_logprobs(r, prompt if req.echo else None),
                    "finish_reason": r.completion.finish_reason,
                }
            )
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": name,
            "system_fingerprint": state.fingerprint,
            "choices": choices,
            "usage": state.usage([len(q) for q in ids], results),
        }

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
                response = _error(
                    401, "invalid or missing API key (send 'Authorization: Bearer <key>')", code="invalid_api_key"
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _LocalOnly:
    """ASGI middleware for a server without a key: the ``Host`` header (and ``Origin``, when a
    browser sends one) must name a loopback address or one of ``extra``, else 403.

    A web page can make the browser POST to ``http://127.0.0.1:8000`` directly (its ``Origin``
    is then the page's) or through a DNS name it rebinds to 127.0.0.1 (its ``Host`` is then that
    name); both are refused, while local clients (``Host: 127.0.0.1:8000``, no ``Origin``) pass.
    """

    def __init__(self, app: Any, extra: Sequence[str] = ()) -> None:
        self.app = app
        self.extra = {h.lower() for h in extra}

    def _ok(self, host: str) -> bool:
        if host.startswith("["):  # [::1]:8000
            name = host[1:].split("]", 1)[0]
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        name = name.lower()
        if name in self.extra or name == "localhost" or name.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            host = headers.get(b"host", b"").decode("latin-1")
            origin = headers.get(b"origin")
            bad = None
            if not self._ok(host):
                bad = f"Host {host!r}"
            elif origin is not None and origin != b"null":
                o = origin.decode("latin-1")
                if not self._ok(o.split("://", 1)[-1]):
                    bad = f"Origin {o!r}"
            elif origin == b"null":
                bad = "Origin 'null'"
            if bad is not None:
                response = _error(
                    403,
                    f"{bad} is not a loopback address; a server without an API key answers local "
                    "clients only (set STEERLAB_API_KEY, or --allowed-host NAME)",
                    code="forbidden_host",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, Out]) -> Out:
    """Await ``work``, cancelling it as soon as the client disconnects (checked every 0.1 s)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.1)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise RequestError("the client disconnected", status=499)
    finally:
        if not task.done():
            task.cancel()


def _json_content_type(value: str | None) -> bool:
    media = (value or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def _read_json(request: Request, config: ServeConfig) -> Any:
    """The request body as JSON: 415 unless it is declared JSON, 413 over the size limit, 408 if
    it does not arrive within the read timeout, 400 when malformed."""
    if not _json_content_type(request.headers.get("content-type")):
        raise RequestError(
            f"Content-Type {request.headers.get('content-type')!r} is not JSON; send 'Content-Type: application/json'",
            status=415,
            code="unsupported_media_type",
        )
    limit = config.max_request_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(
            f"the request body ({declared} bytes) is larger than this server allows ({limit})", status=413
        )

    async def body() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(f"the request body is larger than this server allows ({limit} bytes)", status=413)
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        raw = await asyncio.wait_for(body(), config.read_timeout_s)
    except asyncio.TimeoutError:
        raise RequestError(f"the request body did not arrive within {config.read_timeout_s:g} s", status=408) from None
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


def _stream(
    state: Service,
    obj: str,
    name: str,
    req: ChatRequest | CompletionRequest,
    key: GroupKey,
    ids: Sequence[Sequence[int]],
    *,
    strip: bool,
) -> StreamingResponse:
    """A server-sent-event stream of chunks; its deltas join to the non-streamed reply.

    When the client disconnects, Starlette cancels this generator, which cancels the
    generation task; the rows' ticket is cancelled and they leave the batch at its next step.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue()
    n_rows = len(ids) * req.n
    streams = [TextStream(state.tokenizer, key.stops, strip=strip, eos_ids=state.eos) for _ in range(n_rows)]

    def sink(i: int) -> Any:
        return lambda tok: loop.call_soon_threadsafe(queue.put_nowait, (i, tok))

    rows = state.rows(ids, req, [sink(i) for i in range(n_rows)], Ticket())
    ident = f"{'chatcmpl' if strip else 'cmpl'}-{uuid.uuid4().hex}"
    created = int(time.time())

    def chunk(i: int, text: str | None, finish: str | None, first: bool = False) -> dict[str, Any]:
        if strip:
            delta: dict[str, Any] = (
                {"role": "assistant", "content": ""} if first else ({} if text is None else {"content": text})
            )
            choice: dict[str, Any] = {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": i, "text": text or "", "logprobs": None, "finish_reason": finish}
        return {
            "id": ident,
            "object": obj,
            "created": created,
            "model": name,
            "system_fingerprint": state.fingerprint,
            "choices": [choice],
        }

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
                yield _sse(
                    {"error": {"message": str(e), "type": "invalid_request_error", "param": e.param, "code": e.code}}
                )
                return
            except Exception as e:  # noqa: BLE001 - reported in the stream, which has already begun
                yield _sse(
                    {
                        "error": {
                            "message": f"internal error: {type(e).__name__}: {e}",
                            "type": "server_error",
                            "param": None,
                            "code": None,
                        }
                    }
                )
                return
            for i, r in enumerate(results):
                final = state.chat_text(r.completion) if strip else state.raw_text(r.completion, key.stops)
                rest = streams[i].finish(final)
                if rest:
                    yield _sse(chunk(i, rest, None))
                yield _sse(chunk(i, None, r.completion.finish_reason))
            if req.stream_options is not None and req.stream_options.include_usage:
                yield _sse(
                    {
                        "id": ident,
                        "object": obj,
                        "created": created,
                        "model": name,
                        "choices": [],
                        "usage": state.usage([len(q) for q in ids], results),
                    }
                )
            yield "data: [DONE]\n\n"
        finally:
            if not task.done():
                task.cancel()

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
