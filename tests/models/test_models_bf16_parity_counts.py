"""The parity benchmark's top-1 count and flip margins on crafted next-token logits."""

import math

import bench._bf16 as bf16
import torch


def test_top1_count_and_the_fp32_margin_where_the_choice_flips(monkeypatch):
    ref = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 0.0], [1.0, 0.9, 0.0]])
    low = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 0.1], [0.9, 1.0, 0.0]])  # row 3 flips 0 -> 1
    monkeypatch.setattr(bf16, "_last_logits", lambda lm, prompts: ref if lm == "ref" else low)
    out = bf16.logit_parity("ref", "low", ["a", "b", "c"])
    assert out["n_prompts"] == 3 and out["n_top1_agree"] == 2
    assert math.isclose(out["top1_agreement"], 2 / 3)
    # log-softmax differences within a row equal the logit differences: 1.0 - 0.9
    assert out["fp32_margin_where_they_differ"] == [0.1]
    p = torch.softmax(ref.double(), -1)
    kl = (p * (torch.log_softmax(ref.double(), -1) - torch.log_softmax(low.double(), -1))).sum(-1)
    assert math.isclose(out["kl_mean"], float(kl.mean()), rel_tol=1e-5)
