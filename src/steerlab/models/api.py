"""An OpenAI-compatible chat API as a steerlab backend, on the official ``openai`` SDK.

Works with any server that speaks ``POST {base_url}/chat/completions``: OpenAI, vLLM,
llama.cpp's server, OpenRouter, and ``steerlab serve`` (which also steers per request, through
``extra_body``). :class:`OpenAICompatible` implements
:class:`~steerlab.models.backend.ChatBackend` (``complete``),
:class:`~steerlab.models.backend.OptionScorer` (``option_logprobs``, from the first reply
token's ``top_logprobs``) and :class:`~steerlab.models.backend.TextGenerator` (``generate``,
for the LLM judge). Concurrency, retries, the reply cache and failure records are those of
:class:`~steerlab.models.api_base.APIBackend`.

Example:
    >>> judge = OpenAICompatible("https://api.openai.com/v1", "gpt-4o-mini")  # key from $OPENAI_API_KEY
    >>> judge.generate([[{"role": "user", "content": "Say hi"}]], max_new_tokens=8)  # doctest: +SKIP
    >>> local = OpenAICompatible("http://127.0.0.1:8000/v1", "default",       # steerlab serve default
    ...                          extra_body={"steer": {"vector": "refusal", "strength": 0.1}})
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlparse

from steerlab.errors import BackendError, InputError
from steerlab.models.api_base import (
    APIBackend,
    Classified,
    Sample,
    api_message,
    check_conversation,
    classify_status,
    error_cause,
    one_line,
)
from steerlab.models.backend import Conversation, FinishReason, OptionLogprobs

OPENAI_URL = "https://api.openai.com/v1"

#: Body fields the SDK's ``chat.completions.create`` takes by name; anything else goes in ``extra_body``.
_SDK_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "seed",
        "stop",
        "n",
        "logprobs",
        "top_logprobs",
        "top_p",
    }
)

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "stop",
    "function_call": "stop",
}


class OpenAICompatible(APIBackend):
    """A chat-completions endpoint (see the module docstring).

    Args:
        base_url: the API root, e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8000/v1``.
        model: the model name the server knows.
        api_key_env: environment variable holding the key. A server other than api.openai.com
            may need none; then none is required.
        extra_body: fields added to every request body (e.g. ``{"steer": {...}}`` for
            ``steerlab serve``, ``{"top_k": 20}`` for vLLM); part of the cache key.
        max_tokens_field: ``"max_tokens"`` or ``"max_completion_tokens"``; default: the latter
            for api.openai.com (its reasoning models refuse the former), the former elsewhere.
        top_logprobs: alternatives asked for by :meth:`option_logprobs` (OpenAI allows 0-20).
        **options: timeout, retries, concurrency, backoff, max_backoff, cache_dir, use_cache
            (see :class:`~steerlab.models.api_base.APIBackend`).
    """

    provider = "openai"

    def __init__(
        self,
        base_url: str = OPENAI_URL,
        model: str = "",
        *,
        api_key_env: str = "OPENAI_API_KEY",
        extra_body: Mapping[str, Any] | None = None,
        max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = None,
        top_logprobs: int = 20,
        **options: Any,
    ) -> None:
        super().__init__(model, api_key_env=api_key_env, **options)
        if urlparse(base_url).scheme not in ("http", "https"):
            raise InputError(f"base_url must be an http(s) URL, got {base_url!r}")
        if extra_body is not None and set(extra_body) & _SDK_FIELDS:
            clash = ", ".join(sorted(set(extra_body) & _SDK_FIELDS))
            raise InputError(f"extra_body must not set {clash}; those are set by the call")
        if max_tokens_field not in (None, "max_tokens", "max_completion_tokens"):
            raise InputError(f"max_tokens_field must be max_tokens or max_completion_tokens, got {max_tokens_field!r}")
        if not 0 <= top_logprobs <= 20:
            raise InputError(f"top_logprobs must be between 0 and 20, got {top_logprobs}")
        self.base_url = base_url
        self.extra_body = dict(extra_body or {})
        self.max_tokens_field = max_tokens_field
        self.top_logprobs = top_logprobs

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/")

    # ---- requests ------------------------------------------------------------------------
    def _max_tokens_key(self) -> str:
        if self.max_tokens_field is not None:
            return self.max_tokens_field
        return "max_completion_tokens" if urlparse(self.base_url).hostname == "api.openai.com" else "max_tokens"

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
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in conv],
            self._max_tokens_key(): int(max_new_tokens),
            "temperature": float(temperature),
        }
        if seed is not None:
            body["seed"] = int(seed)
        if stop:
            body["stop"] = list(stop)
        if top_logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = int(top_logprobs)
        body.update(self.extra_body or {})
        return body

    def _api_key(self) -> str | None:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if not key and urlparse(self.base_url).hostname == "api.openai.com":
            raise BackendError(f"{self.name}: no API key; set the environment variable {self.api_key_env}")
        return key or None

    def _client(self) -> Any:
        try:
            import openai
        except ImportError:  # pragma: no cover - openai is a core dependency
            raise BackendError("the openai package is missing: pip install openai") from None
        key = self._api_key()
        # A local server needs no key; the SDK insists on one, so a placeholder goes unsent-looking.
        return openai.AsyncOpenAI(api_key=key or "no-key", base_url=self.base_url, timeout=self.timeout, max_retries=0)

    async def _send(self, client: Any, request: dict[str, Any], n: int) -> list[Sample]:
        named = {k: v for k, v in request.items() if k in _SDK_FIELDS}
        extra = {k: v for k, v in request.items() if k not in _SDK_FIELDS}
        if n != 1:
            named["n"] = n
        reply = await client.chat.completions.create(**named, extra_body=extra or None)
        usage = getattr(reply, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        samples = []
        for choice in sorted(reply.choices, key=lambda c: c.index):
            content = getattr(choice.logprobs, "content", None) if choice.logprobs is not None else None
            top = None
            if request.get("logprobs"):
                if not content:
                    raise _NoLogprobs()
                top = tuple((t.token, float(t.logprob)) for t in content[0].top_logprobs)
            n_tokens = len(content) if content else int(getattr(usage, "completion_tokens", 0) or 0) if n == 1 else 0
            text = (choice.message.content or "").strip()
            samples.append(
                Sample(text, _FINISH.get(choice.finish_reason or "stop", "stop"), prompt_tokens, n_tokens, top)
            )
        return samples

    def _classify(self, e: Exception) -> Classified | None:
        import openai

        if isinstance(e, _NoLogprobs):
            return Classified("the API returned no log-probabilities (does this server support logprobs?)")
        if isinstance(e, openai.APITimeoutError):
            return Classified(f"timed out after {self.timeout:g} s", retry=True)
        if isinstance(e, openai.APIConnectionError):
            return Classified(f"connection error ({error_cause(e)})", retry=True)
        if isinstance(e, openai.APIStatusError):
            return classify_status(e.status_code, api_message(e), e.response.headers)
        if isinstance(e, openai.APIError):  # an error event in a stream, a reply that is not JSON, ...
            return Classified(f"API error: {one_line(str(e))}")
        return None

    # ---- option log-probabilities ---------------------------------------------------------
    def option_logprobs(
        self,
        conversations: Sequence[Conversation],
        options: Sequence[str],
    ) -> list[OptionLogprobs]:
        """Per conversation, ``{option: log-probability of the reply starting with it}``.

        One greedy request per conversation for one token with ``top_logprobs`` alternatives.
        An option's value is the log of the summed probability of the listed first tokens that
        equal it once surrounding whitespace is stripped (``"A"`` and ``" A"`` both count for
        ``"A"``); an option absent from the list is ``-inf``. A failed request gives NaN for
        every option and its reason in the result's ``error``.

        Example:
            >>> api.option_logprobs([user("Answer A or B.")], ["A", "B"])  # doctest: +SKIP
            [{'A': -0.21, 'B': -1.7}]
        """
        if not options or any(not isinstance(o, str) or not o.strip() for o in options):
            raise InputError(f"options must be non-empty strings, got {list(options)!r}")
        jobs = [
            self._job(
                self._body(
                    check_conversation(c),
                    max_new_tokens=1,
                    temperature=0.0,
                    seed=None,
                    stop=(),
                    top_logprobs=self.top_logprobs,
                ),
                1,
                cacheable=True,
            )
            for c in conversations
        ]
        out = []
        for (sample,) in self._sync(lambda: self._run(jobs)):
            if isinstance(sample, str):
                out.append(OptionLogprobs({o: math.nan for o in options}, error=sample))
            else:
                out.append(OptionLogprobs(options_from_top(sample.top_logprobs or (), options)))
        return out


class _NoLogprobs(Exception):
    pass


def options_from_top(top: Sequence[tuple[str, float]], options: Sequence[str]) -> dict[str, float]:
    """``{option: log Σ exp(logprob)}`` over the listed tokens equal to the option after stripping.

    Example:
        >>> options_from_top([(" A", -0.5), ("A", -2.0), ("B", -1.0)], ["A", "B", "C"])["C"]
        -inf
    """
    out = {}
    for o in options:
        lps = [lp for tok, lp in top if tok.strip() == o.strip()]
        if not lps:
            out[o] = -math.inf
        else:
            m = max(lps)
            out[o] = m + math.log(sum(math.exp(lp - m) for lp in lps))
    return out


def parse_api_spec(spec: str) -> APIBackend | None:
    """An API backend from a spec string, or None when ``spec`` names no API.

    ``openai:MODEL@BASE_URL`` → :class:`OpenAICompatible` (``openai:MODEL`` for api.openai.com);
    ``anthropic:MODEL`` → :class:`~steerlab.models.api_anthropic.AnthropicChat` (the
    ``steerlab[anthropic]`` extra).

    Example:
        >>> parse_api_spec("openai:default@http://127.0.0.1:8000/v1").base_url
        'http://127.0.0.1:8000/v1'
    """
    if spec.startswith("openai:"):
        model, _, base = spec[len("openai:") :].partition("@")
        if not model:
            raise InputError(f"{spec!r}: expected openai:MODEL or openai:MODEL@BASE_URL")
        return OpenAICompatible(base or OPENAI_URL, model)
    if spec.startswith("anthropic:"):
        from steerlab.models.api_anthropic import AnthropicChat

        model = spec[len("anthropic:") :]
        if not model:
            raise InputError(f"{spec!r}: expected anthropic:MODEL")
        return AnthropicChat(model)
    return None
