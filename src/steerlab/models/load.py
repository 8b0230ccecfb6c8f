"""The public loader."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from steerlab.models.hf import LanguageModel
from steerlab.models.loading import EMULATED_BF16, pick_device, resolve_dtype, resolve_spec

if TYPE_CHECKING:
    from steerlab.models.backend import ChatBackend


def load_model(
    spec: str = "default",
    *,
    device: str = "auto",
    dtype: str | None = "auto",
    chat_template: str = "auto",
    thinking: bool = False,
    batch_size: int = 8,
) -> LanguageModel:
    """Load a causal LM for steering.

    Args:
        spec: ``"default"`` (Gemma 3 270M base, shipped on PyPI), a hub id, a local model
            directory, or a ``.gguf`` file.
        device: ``"auto"`` (cuda → mps → cpu) or an explicit torch device string.
        dtype: ``"auto"``/None (bf16 on CUDA devices that support it and on CPUs with native
            bf16 matmul — AVX512-BF16 or AMX —, else fp32), ``"float32"``, ``"bfloat16"`` or
            ``"float16"``. Scores, means and log-probabilities accumulate in fp32 either way.
        chat_template: ``"auto"`` (the tokenizer's template if it has one, else the plain
            format), or ``"plain"`` to force the plain format.
        thinking: leave Qwen3-style thinking on (off by default).
        batch_size: default batch size for generation and scoring.

    Example:
        >>> lm = load_model("default")
        >>> lm.generate(["Name three colours."], max_new_tokens=16)
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steerlab.models.chat import ChatFormatter

    dev = pick_device(device)  # checked before any weight is read
    dtype_name, dtype_reason = resolve_dtype(dtype, dev)
    if dtype_reason == EMULATED_BF16:
        print(f"note: {spec}: bfloat16 {dtype_reason}", file=sys.stderr)
    path, model_id = resolve_spec(spec)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype_name))
    model.to(dev)  # type: ignore[arg-type]  # transformers types .to() through a decorator that loses self
    tok = AutoTokenizer.from_pretrained(path)
    return LanguageModel(
        model=model,
        tokenizer=tok,
        model_id=model_id,
        chat=ChatFormatter(tok, mode=chat_template, thinking=thinking),
        batch_size=batch_size,
        dtype_reason=dtype_reason,
    )


def load_backend(spec: str, **kwargs: object) -> ChatBackend:
    """A :class:`~steerlab.models.backend.ChatBackend` from one spec string.

    ``openai:MODEL@BASE_URL`` (or ``openai:MODEL`` for api.openai.com) → an OpenAI-compatible
    API client; anything else → :func:`load_model` (``kwargs`` go to it).
    """
    from steerlab.models.api import parse_api_spec

    api = parse_api_spec(spec)
    return api if api is not None else load_model(spec, **kwargs)  # type: ignore[arg-type,return-value]
