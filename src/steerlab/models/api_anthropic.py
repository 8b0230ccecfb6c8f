"""Anthropic's Messages API as a steerlab backend, on the official ``anthropic`` SDK.

Optional: ``pip install 'steerlab[anthropic]'``. Same contract as
:class:`~steerlab.models.api.OpenAICompatible` (``complete``, ``generate``; concurrency,
retries, cache and failure records from :class:`~steerlab.models.api_base.APIBackend`), with
the Messages API's differences:

* a system message becomes the request's top-level ``system`` (only a leading one is allowed);
* there is no ``seed``: a seed only names the sample in the cache key (two seeds, two samples);
* there are no log-probabilities, so this backend is not an ``OptionScorer``;
* temperature is between 0 and 1; ``n`` is not offered (one sample per request).

Example:
    >>> claude = AnthropicChat("claude-haiku-4-5")          # key from $ANTHROPIC_API_KEY
    >>> claude.generate([user("Say hi")], max_new_tokens=8)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from steerlab.errors import BackendError, InputError
from steerlab.models.api_base import (
    APIBackend,
    Classified,
    Sample,
    api_message,
    classify_status,
    error_cause,
    one_line,
)
from steerlab.models.backend import Conversation, FinishReason

ANTHROPIC_URL = "https://api.anthropic.com"

#: Body fields every SDK version takes by name; the rest (``temperature``, which recent SDKs no longer
#: name) goes in ``extra_body`` — the JSON sent is the same either way.
_SDK_FIELDS = frozenset({"model", "max_tokens", "messages", "system", "stop_sequences"})

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
    "tool_use": "stop",
    "pause_turn": "stop",
}


class AnthropicChat(APIBackend):
    """Claude models through the Messages API (see the module docstring).

    Args:
        model: e.g. ``"claude-haiku-4-5"``.
        api_key_env: environment variable holding the key.
        base_url: the API root (a proxy, or a test server).
        transport: a transport for the SDK's HTTP client (the ``httpx``-family library the SDK
            uses, e.g. its ``MockTransport`` in tests); None for the network.
        **options: timeout, retries, concurrency, backoff, max_backoff, cache_dir, use_cache
            (see :class:`~steerlab.models.api_base.APIBackend`).
    """

    provider = "anthropic"
    supports_n = False

    def __init__(
        self,
        model: str,
        *,
        api_key_env: str = "ANTHROPIC_API_KEY",
        base_url: str = ANTHROPIC_URL,
        transport: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(model, api_key_env=api_key_env, **options)
        self.base_url = base_url
        self.transport = transport

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/")

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
        if temperature > 1:
            raise InputError(f"the Anthropic API takes temperature between 0 and 1, got {temperature}")
        system = [m["content"] for m in conv if m["role"] == "system"]
        if (system and conv[0]["role"] != "system") or len(system) > 1:
            raise InputError("the Anthropic API takes one system message, at the start of the conversation")
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": int(max_new_tokens),
            "temperature": float(temperature),
            "messages": [{"role": m["role"], "content": m["content"]} for m in conv if m["role"] != "system"],
        }
        if system:
            body["system"] = system[0]
        if stop:
            body["stop_sequences"] = list(stop)
        if seed is not None:
            body["steerlab_seed"] = int(seed)  # not sent: names the sample in the cache key
        return body

    def _client(self) -> Any:
        try:
            import anthropic
        except ImportError:
            raise BackendError(
                "the Anthropic backend needs the anthropic package: pip install 'steerlab[anthropic]'",
            ) from None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise BackendError(f"{self.name}: no API key; set the environment variable {self.api_key_env}")
        http = anthropic.DefaultAsyncHttpxClient(transport=self.transport) if self.transport is not None else None
        return anthropic.AsyncAnthropic(
            api_key=key, base_url=self.base_url, timeout=self.timeout, max_retries=0, http_client=http
        )

    async def _send(self, client: Any, request: dict[str, Any], n: int) -> list[Sample]:
        named = {k: v for k, v in request.items() if k in _SDK_FIELDS}
        extra = {k: v for k, v in request.items() if k not in _SDK_FIELDS and k != "steerlab_seed"}
        reply = await client.messages.create(**named, extra_body=extra or None)
        text = "".join(getattr(b, "text", "") for b in reply.content if getattr(b, "type", "") == "text")
        usage = reply.usage
        return [
            Sample(
                text.strip(),
                _FINISH.get(reply.stop_reason or "end_turn", "stop"),
                int(getattr(usage, "input_tokens", 0) or 0),
                int(getattr(usage, "output_tokens", 0) or 0),
            )
        ]

    def _classify(self, e: Exception) -> Classified | None:
        import anthropic

        if isinstance(e, anthropic.APITimeoutError):
            return Classified(f"timed out after {self.timeout:g} s", retry=True)
        if isinstance(e, anthropic.APIConnectionError):
            return Classified(f"connection error ({error_cause(e)})", retry=True)
        if isinstance(e, anthropic.APIStatusError):
            status = e.status_code
            if status == 529:  # "overloaded": retry like a 503
                return Classified(f"HTTP 529: {api_message(e)}", retry=True)
            return classify_status(status, api_message(e), e.response.headers)
        if isinstance(e, anthropic.APIError):
            return Classified(f"API error: {one_line(str(e))}")
        return None
