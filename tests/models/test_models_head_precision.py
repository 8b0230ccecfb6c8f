"""A bf16 model's full-vocabulary logits: each position's top rows are the float32 product of the
bf16 hidden state and head rows (by hand in float64), the rest the bf16 logits; greedy generation
picks from the same logits; a float32 model is untouched."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import tiny_lm

from steerlab.models.head_precision import TOP_ROWS, fp32_top_head, fp32_top_logits

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["How do I bake bread?", "Tell me a story.", "What is two plus two?"]


def _check(
    h: torch.Tensor, w: torch.Tensor, got: torch.Tensor, k: int = TOP_ROWS, low: torch.Tensor | None = None
) -> None:
    """``got`` [N, V]: the k largest bf16 logits ``low`` (default h·w in bf16) of each row are h·w in
    float64 (to 1e-5), the rest are ``low``."""
    with torch.inference_mode():
        exact = h.double() @ w.double().T
        low = (h.to(w.dtype) @ w.T).float() if low is None else low.float()
    assert got.dtype == torch.float32
    top = low.topk(k, dim=-1).indices
    torch.testing.assert_close(got.gather(1, top).double(), exact.gather(1, top), atol=1e-5, rtol=1e-5)
    rest = torch.ones_like(got, dtype=torch.bool).scatter_(1, top, False)
    assert torch.equal(got[rest], low[rest])


def test_fp32_top_logits_by_hand_on_random_rows():
    g = torch.Generator().manual_seed(0)
    h = (torch.randn(37, 64, generator=g) * 3).bfloat16()
    w = torch.randn(3000, 64, generator=g).bfloat16()
    low = h @ w.T
    got = fp32_top_logits(h, w, low, k=8)
    _check(h, w, got, k=8)
    # the bf16 logits were a coarse grid near the top; the refined ones are not
    assert (got.topk(8, -1).values != low.float().topk(8, -1).values).any()
    # a batch of positions [B, T, d] gives the same as its rows one by one, in chunks or not
    got3 = fp32_top_logits(h.reshape(1, 37, 64), w, low.reshape(1, 37, 3000), k=8)
    assert torch.equal(got3.reshape(37, 3000), got)


def test_a_bf16_models_full_head_and_greedy_step_use_the_fp32_top(monkeypatch):
    import steerlab.models.hf as hf

    # the tiny vocabulary is below the size up to which the whole head is upcast; as a real one is not
    monkeypatch.setattr(hf, "_FP32_HEAD_ROWS", 0)
    lm = tiny_lm("llama")
    lm.model.to(torch.bfloat16)
    w = lm.model.get_output_embeddings().weight
    batch = lm.tokenize(PROMPTS)
    h = lm.hidden_states(batch)[:, -1]  # [B, d] bf16
    k = min(TOP_ROWS, w.shape[0])
    with torch.inference_mode():
        _check(h, w, lm.logits_for(h), k)
    # the model's own head inside generate: the logits a greedy step takes its argmax of, against
    # the head's input and raw bf16 output as seen by a hook registered before
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    probe = lm.model.get_output_embeddings().register_forward_hook(lambda m, a, o: seen.append((a[0], o.clone())))
    with torch.inference_mode(), fp32_top_head(lm.model):
        out = lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, -1]
    probe.remove()
    x, raw = seen[0]
    assert raw.dtype == torch.bfloat16
    _check(x[:, -1], w, out, k, low=raw[:, -1])
    assert not lm.model.get_output_embeddings()._forward_hooks  # removed on exit
    # greedy replies: each first token is the argmax of those logits
    replies = lm.complete(PROMPTS, max_new_tokens=1, formatted=True)
    assert [r.token_ids[0] for r in replies] == out.argmax(-1).tolist()


def test_a_float32_model_is_untouched():
    lm = tiny_lm("llama")
    batch = lm.tokenize(PROMPTS)
    with torch.inference_mode():
        plain = lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        with fp32_top_head(lm.model):
            assert not lm.model.get_output_embeddings()._forward_hooks
            again = lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    assert torch.equal(plain, again)
    h = lm.hidden_states(batch)[:, -1]
    with torch.inference_mode():
        assert torch.equal(lm.logits_for(h), h @ lm.model.get_output_embeddings().weight.T)
