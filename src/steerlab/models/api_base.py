"""What every API backend shares: concurrent requests, retries, the disk cache, failure records.

A provider module (:mod:`steerlab.models.api` for OpenAI-compatible servers,
:mod:`steerlab.models.api_anthropic`) subclasses :class:`APIBackend` and supplies three things:
how a conversation becomes a request body, how one request is sent with its SDK (returning one
:class:`Sample` per requested sample), and how the SDK's exceptions classify. Everything else is
here and is the same for every provider:

* **Concurrency.** Requests run on an asyncio event loop, at most ``concurrency`` in flight at
  once (a semaphore held only while a request is on the wire, not while it waits to retry).
  The public methods are synchronous and start their own loop (in a helper thread when the
  caller already runs one, e.g. in a notebook).
* **Retries.** 429, 408, 5xx, timeouts and connection errors are retried up to ``retries``
  times with exponential backoff and jitter (:class:`RetryPolicy`; a ``Retry-After`` header is
  honoured, capped at ``max_backoff``). A wrong key, a forbidden model or a wrong URL (401, 403,
  404) raise :class:`~steerlab.errors.BackendError` at once: no retry can fix them. Any other
  refusal (400, 413, 422) fails that item only.
* **Failure records.** An item given up on comes back as :meth:`Completion.failure` with its
  error, and is written to the cache's failure table; it is never cached as an answer, so
  asking again (a resumed run) retries it.
* **Cache.** :class:`~steerlab.models.api_cache.ReplyCache`, keyed by the whole request, seed
  and sample index. Only replies that are meant to be reproducible are cached: greedy ones
  (``temperature == 0``) and seeded ones. An unseeded sampled reply is a fresh draw every call.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from steerlab.errors import BackendError, InputError
from steerlab.models.api_cache import ReplyCache, request_key
from steerlab.models.backend import Completion, Conversation, FinishReason

T = TypeVar("T")
_CACHE_OPEN = threading.Lock()


def default_cache_dir() -> Path:
    """Where API replies are cached by default: ``$STEERLAB_API_CACHE`` if set, else
    ``$STEERLAB_CACHE/api`` (``~/.cache/steerlab/api``)."""
    explicit = os.environ.get("STEERLAB_API_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("STEERLAB_CACHE", Path.home() / ".cache" / "steerlab")) / "api"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter.

    Retry ``k`` (0-based) waits a time drawn uniformly from ``[d/2, d]`` with
    ``d = min(max_backoff, backoff · 2**k)`` ("equal jitter": never a burst of instant retries,
    and clients that failed together spread out). A server's ``Retry-After`` raises the wait to
    at least that many seconds (still capped at ``max_backoff``).

    Args:
        retries: retries after the first attempt (0 = try once).
        backoff: the first retry's upper wait, in seconds.
        max_backoff: the longest wait.
    """

    retries: int = 4
    backoff: float = 0.5
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        if self.retries < 0 or not (self.backoff >= 0 and self.max_backoff >= 0):
            raise InputError(f"retry policy needs retries >= 0 and backoffs >= 0, got {self}")

    def delay(self, retry: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        d = min(self.max_backoff, self.backoff * 2.0**retry)
        wait = (rng or random).uniform(d / 2, d)
        if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
            wait = max(wait, min(retry_after, self.max_backoff))
        return wait


@dataclass(frozen=True)
class Sample:
    """One sample of a reply, normalised across providers (what the cache stores).

    Attributes:
        text: the reply text (stripped of surrounding whitespace, like local completions).
        finish_reason: ``stop``, ``length`` or ``content_filter``.
        prompt_tokens: prompt tokens the API counted.
        completion_tokens: tokens of this sample (0 when the API does not say: ``n > 1``
            without log-probabilities).
        top_logprobs: the first reply token's alternatives ``[(token, logprob), ...]``, when asked for.
    """

    text: str
    finish_reason: FinishReason
    prompt_tokens: int = 0
    completion_tokens: int = 0
    top_logprobs: tuple[tuple[str, float], ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "top_logprobs": None if self.top_logprobs is None else [list(t) for t in self.top_logprobs],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Sample:
        top = d.get("top_logprobs")
        return cls(
            d["text"],
            d["finish_reason"],
            int(d.get("prompt_tokens", 0)),
            int(d.get("completion_tokens", 0)),
            None if top is None else tuple((str(t), float(lp)) for t, lp in top),
        )

    def completion(self) -> Completion:
        return Completion(self.text, self.finish_reason, self.prompt_tokens, self.completion_tokens)


@dataclass(frozen=True)
class Classified:
    """How an exception from a provider SDK is handled."""

    message: str  # one line for the failure record
    retry: bool = False  # 429 / 408 / 5xx / timeout / connection error
    fatal: bool = False  # 401 / 403 / 404: raise BackendError for the whole call
    retry_after: float | None = None


@dataclass(frozen=True)
class Job:
    """One request to send: its body, how many samples, and the cache key of each sample."""

    request: dict[str, Any]
    n: int
    keys: tuple[str, ...]  # one per sample; empty when the request is not cacheable


class _Fatal(Exception):
    pass


class APIBackend:
    """Shared machinery of API backends (see the module docstring); providers subclass it.

    Args:
        model: the model name the API knows.
        api_key_env: environment variable holding the key.
        timeout: seconds per request attempt.
        retries: retries of a request after 429 / 408 / 5xx / timeouts / connection errors.
        concurrency: requests in flight at once.
        backoff, max_backoff: first and largest retry wait in seconds (see :class:`RetryPolicy`).
        cache_dir: where the reply cache lives (default: :func:`default_cache_dir`).
        use_cache: False turns the disk cache off.
    """

    provider = "api"
    supports_n = True  # the API returns several samples per request

    def __init__(
        self,
        model: str,
        *,
        api_key_env: str = "",
        timeout: float = 60.0,
        retries: int = 4,
        concurrency: int = 8,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        cache_dir: str | os.PathLike[str] | None = None,
        use_cache: bool = True,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise InputError(f"{type(self).__name__} needs a model name, got {model!r}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InputError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise InputError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.concurrency = concurrency
        self.policy = RetryPolicy(retries, backoff, max_backoff)
        self.cache_dir = cache_dir
        self.use_cache = use_cache
        self._cache: ReplyCache | None = None

    @property
    def retries(self) -> int:
        return self.policy.retries

    @property
    def url(self) -> str:
        """The endpoint the requests go to (part of the cache key and of :attr:`name`)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, concurrency={self.concurrency}, retries={self.retries})"

    def __getstate__(self) -> dict[str, Any]:  # the cache's connections stay behind (reopened lazily)
        state = dict(self.__dict__)
        state["_cache"] = None
        return state

    # ---- provider hooks ----------------------------------------------------------------------
    def _body(
        self,
        conv: Conversation,
        *,
        max_new_tokens: int,
        temperature: float,
        seed: int | None,
        stop: Sequence[str],
        top_logprobs: int | None,
    ) -> dict[str, Any]:
        raise NotImplementedError

    def _client(self) -> Any:
        """A fresh async SDK client (made inside the running event loop)."""
        raise NotImplementedError

    async def _send(self, client: Any, request: dict[str, Any], n: int) -> list[Sample]:
        raise NotImplementedError

    def _classify(self, e: Exception) -> Classified | None:
        """How to handle ``e``; None for exceptions that are bugs (re-raised as they are)."""
        raise NotImplementedError

    # ---- the cache ---------------------------------------------------------------------------
    @property
    def cache(self) -> ReplyCache | None:
        """The reply cache (None when ``use_cache=False``)."""
        if self.use_cache and self._cache is None:
            with _CACHE_OPEN:  # one ReplyCache per client, even when threads ask at once
                if self._cache is None:
                    self._cache = ReplyCache(self.cache_dir if self.cache_dir is not None else default_cache_dir())
        return self._cache if self.use_cache else None

    def _job(self, request: dict[str, Any], n: int, cacheable: bool) -> Job:
        keys = tuple(request_key(self.provider, self.url, request, j) for j in range(n)) if cacheable else ()
        return Job(request, n, keys)

    # ---- public API ------------------------------------------------------------------------
    def complete(
        self,
        conversations: Sequence[Conversation],
        *,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        seed: int | Sequence[int] | None = None,
        stop: Sequence[str] = (),
        n: int = 1,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Completion]:
        """One :class:`Completion` per conversation and sample (failed items as failure records).

        Args:
            conversations: the conversations to answer.
            max_new_tokens: most tokens per reply.
            temperature: 0 = greedy.
            seed: one int (conversation ``i`` gets ``seed + i``), one per conversation, or None.
                Sent as the request's ``seed`` where the API takes one; always part of the cache key.
            stop: stop strings.
            n: samples per conversation, asked for in ONE request (the API's ``n``); the result is
                conversation-major: ``[c0 s0, c0 s1, ..., c1 s0, ...]``. Each sample is cached
                under its own index.
            progress: called as ``progress(done, total)`` as requests finish.

        Example:
            >>> api = OpenAICompatible("http://127.0.0.1:8000/v1", "default")  # doctest: +SKIP
            >>> api.complete([user("Hi")], max_new_tokens=8, temperature=1.0, seed=3)  # doctest: +SKIP
        """
        if max_new_tokens < 1 or n < 1:
            raise InputError(f"max_new_tokens and n must be at least 1, got {max_new_tokens} and {n}")
        if n != 1 and not self.supports_n:
            raise InputError(
                f"{type(self).__name__} returns one sample per request; ask with n=1 "
                "(several seeds give several samples)"
            )
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
            raise InputError(f"temperature must be a finite number >= 0, got {temperature!r}")
        jobs = []
        for conv, s in zip(conversations, _row_seeds(seed, len(conversations))):
            body = self._body(
                check_conversation(conv),
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                seed=s,
                stop=list(stop),
                top_logprobs=None,
            )
            jobs.append(self._job(body, n, cacheable=temperature == 0 or s is not None))
        results = self._sync(lambda: self._run(jobs, progress))
        return [s.completion() if isinstance(s, Sample) else Completion.failure(s) for r in results for s in r]

    def generate(
        self,
        conversations: Sequence[Conversation],
        *,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[str]:
        """One reply text per conversation (the :class:`~steerlab.models.backend.TextGenerator` form).

        Unlike :meth:`complete`, a failed item raises :class:`~steerlab.errors.BackendError`
        (after every other item was answered and cached), since a bare string cannot carry the
        failure: a rerun asks again only for what failed.
        """
        out = self.complete(conversations, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
        failed = [c for c in out if c.failed]
        if failed:
            raise BackendError(
                f"{self.name}: {len(failed)} of {len(out)} requests failed (first: {failed[0].error}); "
                "the others are cached, so a rerun retries only the failures"
            )
        return [c.text for c in out]

    @property
    def name(self) -> str:
        return f"api:{self.model}@{self.url}"

    # ---- the request loop --------------------------------------------------------------------
    def _sync(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``make()`` to completion from synchronous code (in a helper thread under a running loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(make())
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = asyncio.run(make())
            except BaseException as e:  # noqa: BLE001 - handed back to the caller's thread
                box["error"] = e

        t = threading.Thread(target=target, name="steerlab-api")
        t.start()
        t.join()
        if "error" in box:
            raise box["error"]
        return box["value"]

    async def _run(
        self,
        jobs: Sequence[Job],
        progress: Callable[[int, int], None] | None = None,
    ) -> list[list[Sample | str]]:
        """Each job's samples (a :class:`Sample`, or the error string of a failed one), in order.

        Cached samples are served from the cache; a job with any sample missing is sent (for all
        its samples) and only the missing ones are stored, so a cached sample never changes.
        Identical cacheable jobs in one call are sent once.
        """
        cache = self.cache if any(j.keys for j in jobs) else None
        out: list[list[Sample | str] | None] = [None] * len(jobs)
        hits: list[list[Sample | None]] = []
        first: dict[tuple[str, ...], int] = {}  # keys -> the job that sends them
        todo: list[int] = []
        for i, job in enumerate(jobs):
            got = [cache.get(k) for k in job.keys] if cache is not None and job.keys else [None] * job.n
            hits.append([None if h is None else Sample.from_json(h) for h in got])
            if all(h is not None for h in hits[i]):
                out[i] = list(hits[i])  # type: ignore[arg-type]
            elif job.keys and job.keys in first:
                continue  # a duplicate of an earlier job in this call: copied below
            else:
                if job.keys:
                    first[job.keys] = i
                todo.append(i)
        total, done = len(jobs), len(jobs) - len(todo)
        if progress is not None:
            progress(done, total)
        if todo:
            sem = asyncio.Semaphore(self.concurrency)
            client = self._client()
            tasks = [asyncio.ensure_future(self._one(client, sem, jobs[i], hits[i], cache)) for i in todo]
            try:
                for i, fut in zip(todo, tasks):
                    out[i] = await fut
                    done += 1
                    if progress is not None:
                        progress(done, total)
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            finally:
                await _close(client)
        for i, job in enumerate(jobs):
            if out[i] is None:
                out[i] = list(out[first[job.keys]])  # type: ignore[arg-type]
        return out  # type: ignore[return-value]

    async def _one(
        self, client: Any, sem: asyncio.Semaphore, job: Job, hits: Sequence[Sample | None], cache: ReplyCache | None
    ) -> list[Sample | str]:
        """Send one job with retries; store its new samples (or its failure) in the cache."""
        attempt = 0
        while True:
            async with sem:
                try:
                    samples = await self._send(client, job.request, job.n)
                    err = None
                except Exception as e:  # noqa: BLE001 - classified below; bugs are re-raised
                    err = self._classify(e)
                    if err is None:
                        raise
            if err is None:
                if len(samples) == job.n:
                    kept: list[Sample | str] = []
                    for j, (new, old) in enumerate(zip(samples, hits)):
                        if old is None and cache is not None and job.keys:
                            cache.put(job.keys[j], job.request, new.to_json())
                        kept.append(new if old is None else old)
                    return kept
                err = Classified(f"the API returned {len(samples)} samples for n={job.n}")
            if err.fatal:
                raise BackendError(f"{self.name}: {err.message}")
            if not err.retry or attempt >= self.policy.retries:
                message = f"{err.message} (after {attempt + 1} attempt{'s' if attempt else ''})"
                if cache is not None:
                    for j, key in enumerate(job.keys):
                        if hits[j] is None:
                            cache.fail(key, job.request, message, attempt + 1)
                return [old if old is not None else message for old in hits]
            await asyncio.sleep(self.policy.delay(attempt, err.retry_after))
            attempt += 1


def classify_status(status: int, message: str, headers: Mapping[str, str]) -> Classified:
    """401/403/404 are fatal; 408/409/429/5xx are retried; any other status fails the item."""
    text = f"HTTP {status}: {message}"
    if status in (401, 403):
        return Classified(f"{text} (check the API key)", fatal=True)
    if status == 404:
        return Classified(f"{text} (check the base URL and the model name)", fatal=True)
    if status in (408, 409, 429) or status >= 500:
        return Classified(text, retry=True, retry_after=retry_after_seconds(headers))
    return Classified(text)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return float(value) * scale
            except ValueError:
                return None
    return None


def api_message(e: Any) -> str:
    """The server's own error message from an SDK status error, on one line."""
    body = getattr(e, "body", None)
    if isinstance(body, Mapping):
        err = body.get("error", body)
        if isinstance(err, Mapping) and err.get("message"):
            return one_line(str(err["message"]))[:300]
    return one_line(str(getattr(e, "message", e)))[:300]


def error_cause(e: BaseException) -> str:
    """What lies under an SDK connection error (refused, reset, DNS), on one line."""
    inner = e.__cause__ or e.__context__
    return one_line(str(inner) or type(inner).__name__) if inner is not None else one_line(str(e))


def one_line(text: str) -> str:
    return " ".join(text.split())


def check_conversation(conv: Conversation) -> Conversation:
    if not isinstance(conv, (list, tuple)) or not conv:
        raise InputError(f"a conversation must be a non-empty list of messages, got {conv!r}")
    for m in conv:
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise InputError(f"a message must be {{'role': str, 'content': str}}, got {m!r}")
    return conv


def _row_seeds(seed: int | Sequence[int] | None, n: int) -> list[int | None]:
    if seed is None:
        return [None] * n
    if isinstance(seed, (bool, str, bytes)) or not isinstance(seed, (int, Sequence)):
        raise InputError(f"seed must be an int, one int per conversation, or None; got {seed!r}")
    if isinstance(seed, int):
        return [seed + i for i in range(n)]
    seeds = [int(s) for s in seed]
    if len(seeds) != n:
        raise InputError(f"{len(seeds)} seeds for {n} conversations; give one seed, or one per conversation")
    return seeds  # type: ignore[return-value]


async def _close(client: Any) -> None:
    close: Callable[[], Awaitable[None]] | None = getattr(client, "close", None)
    if close is not None:
        await close()
