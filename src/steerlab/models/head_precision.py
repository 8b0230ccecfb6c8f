"""Half-precision LM-head logits with each position's top rows recomputed in float32.

A bf16 logit near 20 is stored with a step of 0.125, and on Gemma 3 270M that rounding alone
flipped 2 of 132 greedy next tokens against float32 (``python -m bench.bench_bf16_parity``): the
trunk's own bf16 error flipped one more. Recomputing the few largest logits of every position in
float32 from the same (bf16) hidden state takes k rows of the head instead of the whole
vocabulary, so the argmax and the top of the softmax are float32's wherever the trunk agrees.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

TOP_ROWS = 16  # per position: the bf16 error of a logit is far below the gap to the 16th largest
_CHUNK = 1024  # positions refined at a time (bounds the gathered [chunk, k, d] head rows)


def is_half(t: torch.Tensor) -> bool:
    return t.dtype in (torch.bfloat16, torch.float16)


def fp32_top_logits(
    h: torch.Tensor, w: torch.Tensor, logits: torch.Tensor, bias: torch.Tensor | None = None, k: int = TOP_ROWS
) -> torch.Tensor:
    """``logits`` (``h @ wᵀ (+ bias)`` in half precision, ``[..., V]``) as float32, with each position's
    ``k`` largest recomputed in float32 from ``h`` ``[..., d]`` and the head rows ``w`` ``[V, d]``.

    Example (a logit of 20.05 is 20.0 in bf16; its float32 value comes back):
        >>> h = torch.tensor([[1.0]]); w = torch.tensor([[20.05], [1.0]])
        >>> lo = (h.bfloat16() @ w.bfloat16().T)
        >>> fp32_top_logits(h.bfloat16(), w.bfloat16(), lo, k=1)[0, 0].item() == w.bfloat16()[0, 0].float().item()
        True
    """
    out = logits.float()
    k = min(k, out.shape[-1])
    flat_h, flat = h.reshape(-1, h.shape[-1]), out.reshape(-1, out.shape[-1])
    for i in range(0, flat.shape[0], _CHUNK):
        rows = flat[i : i + _CHUNK]
        top = rows.topk(k, dim=-1).indices  # [n, k]
        exact = torch.einsum("nd,nkd->nk", flat_h[i : i + _CHUNK].float(), w[top].float())
        if bias is not None:
            exact = exact + bias[top].float()
        rows.scatter_(-1, top, exact)
    return out


@contextlib.contextmanager
def fp32_top_head(model: Any, k: int = TOP_ROWS) -> Iterator[None]:
    """While open, a half-precision model's output head returns :func:`fp32_top_logits` (a no-op
    for a float32 model): what ``generate`` picks greedily then is float32's top of the head."""
    head = model.get_output_embeddings()
    if head is None or not is_half(head.weight):
        yield
        return

    def hook(module: Any, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        return fp32_top_logits(args[0], module.weight, output, getattr(module, "bias", None), k)

    handle = head.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
