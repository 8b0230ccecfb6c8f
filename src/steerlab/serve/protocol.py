"""The requests ``steerlab serve`` accepts: OpenAI's chat and text completion bodies, plus ``steer``.

Every field is either honoured or refused with a 400 that names it — never silently ignored:

* honoured: ``model``, ``messages`` / ``prompt``, ``max_tokens`` / ``max_completion_tokens``,
  ``temperature`` (default 1, as OpenAI's), ``top_p``, ``top_k`` (vLLM's extension), ``n``,
  ``seed``, ``stop``, ``stream``, ``stream_options.include_usage``, ``logprobs``,
  ``top_logprobs``, ``user`` (an identifier; it changes nothing), and ``steer`` (steerlab's
  extension, sent with the official client as ``extra_body={"steer": {...}}``);
* completions also: ``echo`` (the prompt is returned before the reply; with ``logprobs``, its
  tokens' log-probabilities, the first None; ``max_tokens: 0`` scores the prompt only) and
  token-id prompts (``list[int]`` / ``list[list[int]]``, as lm-evaluation-harness sends);
* accepted only at their no-op values: ``presence_penalty`` / ``frequency_penalty`` (0),
  ``logit_bias`` (empty), ``response_format`` (``{"type": "text"}``), ``best_of`` (1),
  ``suffix`` (none);
* refused by name: OpenAI fields the server does not implement (``tools``, ``audio``, ...);
* refused as unknown: anything else.

Types are strict (JSON's own): ``"0.1"`` or ``true`` is not a number and ``1`` is not a
boolean; an integer is accepted where a number is expected.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from steerlab.names import Site

#: OpenAI request fields steerlab serve does not implement (refused with their name).
UNSUPPORTED = frozenset(
    {
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "parallel_tool_calls",
        "audio",
        "modalities",
        "prediction",
        "reasoning_effort",
        "service_tier",
        "store",
        "metadata",
        "web_search_options",
        "verbosity",
        "prompt_cache_key",
        "safety_identifier",
        "min_p",
        "repetition_penalty",
    }
)

MAX_SEED = 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38  # strengths become float32 tensors


class RequestError(ValueError):
    """A request the server refuses; ``status`` is the HTTP status (400 unless said otherwise)."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code
        self.retry_after = retry_after  # seconds, sent as the Retry-After header


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SteerSpec(_Strict):
    """Per-request steering: which loaded vector, how, where (``extra_body={"steer": {...}}``)."""

    vector: str = Field(description="name of a vector the server loaded with --vector NAME=FILE")
    kind: Literal["add", "ablate"] = Field("add", description="add strength·vector, or project the direction out")
    strength: float | None = Field(None, description="add: the multiplier of the vector (required for add)")
    layers: list[int] | Literal["all"] | None = Field(
        None, description="layers; default: the vector's own layer (add) or every layer (ablate)"
    )
    site: Site | None = Field(None, description="resid_pre, resid_post, attn_out or mlp_out; default: the kind's")
    positions: str = Field("all", description="tokens touched: all, prompt, generated, last, last:K")

    @model_validator(mode="after")
    def _strength(self) -> SteerSpec:
        if self.kind == "add" and self.strength is None:
            raise ValueError("steer: kind 'add' needs a strength")
        if self.kind == "ablate" and self.strength is not None:
            raise ValueError("steer: kind 'ablate' takes no strength")
        if self.strength is not None and not (math.isfinite(self.strength) and abs(self.strength) <= FLOAT32_MAX):
            raise ValueError("strength must be a finite number (within float32's range)")
        if isinstance(self.layers, list) and not self.layers:
            raise ValueError("steer: layers must not be empty")
        if isinstance(self.layers, list) and len(set(self.layers)) != len(self.layers):
            twice = sorted({x for x in self.layers if self.layers.count(x) > 1})
            raise ValueError(f"steer: layers {twice} listed more than once (each layer is steered once)")
        return self


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(_Strict):
    include_usage: bool = False


class ResponseFormat(_Strict):
    type: Literal["text"]


class _Sampling(_Strict):
    model: str
    max_tokens: int | None = Field(None, ge=0)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=-1)
    n: int = Field(1, ge=1)
    seed: int | None = Field(None, ge=-MAX_SEED, le=MAX_SEED)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    steer: SteerSpec | None = None

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, v: float) -> float:
        if v != 0:
            raise ValueError("penalties are not supported by steerlab serve; leave them at 0")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _no_bias(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v:
            raise ValueError("logit_bias is not supported by steerlab serve")
        return v

    @model_validator(mode="after")
    def _stream_options(self) -> _Sampling:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed with stream=true")
        return self

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if any(not s for s in stops):
            raise RequestError("stop strings must not be empty", param="stop")
        return stops


class ChatRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None

    @model_validator(mode="after")
    def _checks(self) -> ChatRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs=true")
        if (
            self.max_tokens is not None
            and self.max_completion_tokens is not None
            and (self.max_tokens != self.max_completion_tokens)
        ):
            raise ValueError("max_tokens and max_completion_tokens disagree; give one")
        if self.max_tokens == 0:
            raise ValueError("max_tokens must be at least 1")
        if self.messages[-1].role == "assistant":
            raise ValueError("the last message must not be the assistant's (continuing a reply is not supported)")
        return self

    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def wanted_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(_Sampling):
    """``POST /v1/completions`` (raw text, no chat formatting)."""

    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None

    @model_validator(mode="after")
    def _checks(self) -> CompletionRequest:
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("max_tokens 0 is only meaningful with echo=true (scoring the prompt)")
        if self.echo and self.stream:
            raise ValueError("echo with stream=true is not supported; ask without stream")
        if self.best_of not in (None, 1):
            raise ValueError("best_of is not supported by steerlab serve (use n)")
        if self.suffix:
            raise ValueError("suffix is not supported by steerlab serve")
        if isinstance(self.prompt, list) and not self.prompt:
            raise ValueError("prompt must not be an empty list")
        if isinstance(self.prompt, list) and any(isinstance(p, list) and not p for p in self.prompt):
            raise ValueError("a token-id prompt must not be empty")
        return self

    def prompts(self) -> list[str] | list[list[int]]:
        """The prompts: texts, or token-id lists (one ``list[int]`` is one prompt)."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if all(isinstance(x, int) for x in p):
            return [[x for x in p if isinstance(x, int)]]
        if all(isinstance(x, str) for x in p):
            return [x for x in p if isinstance(x, str)]
        return [x for x in p if isinstance(x, list)]

    def token_limit(self) -> int | None:
        return self.max_tokens

    def wanted_logprobs(self) -> int | None:
        return self.logprobs


def parse_request(cls: type[_Sampling], body: Any) -> Any:
    """Validate a decoded JSON body as ``cls``; a :class:`RequestError` names the first problem."""
    if not isinstance(body, dict):
        raise RequestError(f"the request body must be a JSON object, got {type(body).__name__}")
    for name in body:
        if name in UNSUPPORTED:
            raise RequestError(f"'{name}' is not supported by steerlab serve", param=name)
    try:
        return cls.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            where = f" in '{loc.rsplit('.', 1)[0]}'" if "." in loc else ""
            raise RequestError(f"unknown field '{loc.rsplit('.', 1)[-1]}'{where}", param=loc) from None
        if first["type"] == "missing":
            raise RequestError(f"'{loc}' is required", param=loc) from None
        msg = first["msg"].removeprefix("Value error, ")
        raise RequestError(f"{loc}: {msg}" if loc else msg, param=loc or None) from None
