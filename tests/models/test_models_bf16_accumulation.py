"""In a bf16 model, means, norms, scores and log-probabilities come back as float32 tensors
computed in float32 (compared with references computed by hand from the bf16 activations)."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import tiny_lm

from steerlab.evals.refusal_score import last_position_logits, next_token_kl, refusal_log_odds
from steerlab.vectors.extract import Example, extract, read_activations

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["How do I bake bread?", "Tell me a story.", "What is two plus two?"]


def bf16_lm():
    lm = tiny_lm("llama")
    lm.model.to(torch.bfloat16)
    return lm


def test_read_activations_are_float32_means_of_bf16_states():
    lm = bf16_lm()
    examples = [Example(p, "Sure.") for p in PROMPTS]
    acts, norms = read_activations(lm, examples, [1], selector="mean", batch_size=3)
    assert acts[1].dtype == torch.float32 and norms[1].dtype == torch.float32
    # reference: the raw bf16 states of the same batch, averaged by hand in float64
    batch = lm.tokenize_with_completions([lm.format(p) for p in PROMPTS], ["Sure."] * 3)[0]
    h = lm.forward_to_layer(batch, 1).double()  # [B, T, d]
    real = batch.attention_mask.bool()
    for b in range(3):
        # the completion span of a left-padded row: its last (total - prompt_len) real tokens
        n_completion = int(real[b].sum() - batch.prompt_len[b])
        rows = h[b][real[b]][-n_completion:]
        torch.testing.assert_close(acts[1][b].double(), rows.mean(0), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(norms[1][b].double(), rows.norm(dim=-1).mean(), atol=1e-4, rtol=1e-5)


def test_extracted_vector_is_float32():
    lm = bf16_lm()
    pos, neg = [Example(p, "No.") for p in PROMPTS], [Example(p, "Yes.") for p in PROMPTS]
    vecs = extract(lm, pos, neg, [0, 2])
    acts, _ = read_activations(lm, pos + neg, [0, 2])
    for layer in (0, 2):
        assert vecs[layer].vector.dtype == torch.float32
        ref = acts[layer][:3].double().mean(0) - acts[layer][3:].double().mean(0)
        torch.testing.assert_close(vecs[layer].vector.double(), ref, atol=1e-6, rtol=1e-6)


def test_head_slice_is_float32_product_and_scores_are_float32():
    lm = bf16_lm()
    batch = lm.tokenize(PROMPTS)
    h = lm.hidden_states(batch)[:, -1]  # [B, d] bf16
    assert h.dtype == torch.bfloat16
    ids = torch.tensor([5, 9, 40])
    got = lm.logits_for(h, ids)
    # reference: the same product in float64 from the bf16 weights
    ref = h.double() @ lm.model.get_output_embeddings().weight[ids].double().T
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-5)
    logits = last_position_logits(lm, batch)
    assert logits.dtype == torch.float32
    odds = refusal_log_odds(logits, [5, 9])
    assert odds.dtype == torch.float64
    lp = torch.log_softmax(logits.double(), -1)
    inside = torch.logsumexp(lp[:, [5, 9]], -1)
    outside = torch.log(-torch.expm1(inside))
    torch.testing.assert_close(odds.double(), inside - outside, atol=1e-4, rtol=1e-4)
    kl = next_token_kl(logits, logits.flip(0))
    assert kl.dtype == torch.float64 and (kl >= 0).all()


def test_continuation_logprobs_are_float32_log_softmax():
    lm = bf16_lm()
    got = lm.continuation_logprobs(["Hi"], ["ok"])[0]
    batch, c_ids = lm.tokenize_with_completions([lm.format("Hi")], ["ok"])
    h = lm.hidden_states(batch)[0].double()
    w = lm.model.get_output_embeddings().weight.double()
    n = len(c_ids[0])
    width = batch.input_ids.shape[1]
    lp = torch.log_softmax(h[width - n - 1 : width - 1] @ w.T, -1)
    ref = lp[torch.arange(n), torch.tensor(c_ids[0])]
    # the full head is a bf16 product: its logits are rounded to bf16 (about 3 significant digits)
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float64), ref, atol=0.05, rtol=0.02)


@pytest.mark.slow
def test_bf16_extraction_matches_fp32_on_default_model(default_lm):
    import steerlab as sl
    from steerlab.data.loaders import load_shipped

    pairs = load_shipped("refusal_pairs")[:24]
    pos = [Example(p.prompt, p.positive) for p in pairs]
    neg = [Example(p.prompt, p.negative) for p in pairs]
    layers = [3, 6, 9]
    ref = extract(default_lm, pos, neg, layers)
    bf = sl.load_model("default", device="cpu", dtype="bfloat16")
    got = extract(bf, pos, neg, layers)
    for layer in layers:
        assert got[layer].vector.dtype == torch.float32
        cos = torch.nn.functional.cosine_similarity(got[layer].vector, ref[layer].vector, dim=0)
        assert cos >= 0.999, (layer, float(cos))
