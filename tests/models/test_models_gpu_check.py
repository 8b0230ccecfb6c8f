"""``bench/gpu_check.py`` runs end to end with the device as a parameter (here: CPU, a tiny saved model)."""

from __future__ import annotations

import pytest
from tests.conftest import save_tiny

pytestmark = pytest.mark.usefixtures("one_thread")


def test_gpu_check_on_cpu_with_a_tiny_model(tmp_path):
    from bench.gpu_check import run

    folder = save_tiny(tmp_path / "tiny", "llama")
    res = run(
        str(folder),
        "cpu",
        batches=(2,),
        new_tokens=3,
        rounds=2,
        n_prompts=2,
        n_pairs=3,
        n_ab=2,
        peak_size=64,
        copy_mb=1,
    )
    p = res["parity"]
    # the same weights in bf16: the logits barely move, so the measurements are near their ideal values
    assert p["logits"]["n_prompts"] == 4 and p["logits"]["top1_agreement"] == 1.0
    assert 0 <= p["logits"]["kl_mean"] <= p["logits"]["kl_max"] < 1e-3
    assert p["vectors"]["cosine_min"] > 0.999
    assert p["ab"]["n_questions"] == 2 and p["ab"]["logit_diff_absdiff_max"] < 0.05
    t = res["throughput"][0]
    # each side made batch × new_tokens tokens; tokens/s is that over the measured seconds
    for side in ("hf_fp32", "steerlab_low"):
        assert len(t["seconds"][side]) == 2
        rates = sorted(6 / s for s in t["seconds"][side])
        assert rates[0] * 0.999 <= t["tokens_per_s"][side] <= rates[-1] * 1.001
    assert t["ratio"] == pytest.approx(t["tokens_per_s"]["steerlab_low"] / t["tokens_per_s"]["hf_fp32"])
    assert res["peaks"]["mm_gflops_float32"] > 0 and res["peaks"]["copy_gb_per_s"] > 0
    assert (res["device"], res["dtype"]) == ("cpu", "bfloat16")
