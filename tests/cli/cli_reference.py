"""Independent references for the CLI tests: plain PyTorch forward hooks, no steerlab hooks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from steerlab.models.chat import plain_format


def load(path: str):
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    return model, AutoTokenizer.from_pretrained(path)


def prompt_text(user: str) -> str:
    """The documented plain format (the tiny tokenizer has no chat template)."""
    return plain_format([{"role": "user", "content": user}])


def layer_outputs(model, ids: Sequence[int]) -> list[torch.Tensor]:
    """Per decoder layer, its output hidden states ``[T, d]`` for one unpadded sequence."""
    seen: list[torch.Tensor] = []
    hooks = [
        layer.register_forward_hook(lambda m, a, out: seen.append((out[0] if isinstance(out, tuple) else out)[0]))
        for layer in model.model.layers
    ]
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([list(ids)]))
    finally:
        for h in hooks:
            h.remove()
    return seen


def _adder(delta: torch.Tensor):
    def fn(m, a, out):
        if isinstance(out, tuple):
            return (out[0] + delta, *out[1:])
        return out + delta

    return fn


def greedy(model, tok, user: str, n: int, adds: Sequence[tuple[int, torch.Tensor]] = ()) -> str:
    """Greedy decoding by full recomputation (no KV cache), adding ``delta`` to each given layer's output."""
    ids = tok(prompt_text(user))["input_ids"]
    hooks = [model.model.layers[layer].register_forward_hook(_adder(delta)) for layer, delta in adds]
    new: list[int] = []
    try:
        with torch.no_grad():
            for _ in range(n):
                nxt = int(model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
                new.append(nxt)
                if nxt == tok.eos_token_id:
                    break
    finally:
        for h in hooks:
            h.remove()
    return tok.decode(new, skip_special_tokens=True).strip()
