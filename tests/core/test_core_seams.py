"""Seams the studies build on: per-row ablation, the gradient path, residual writers, hook context."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from conftest import ARCHS, tiny_lm, tiny_model
from steerlab.errors import InputError
from steerlab.interventions import Ablate, Add, Capture, HookEntry, hook_manager, intervene
from steerlab.models.layers import arch_spec, residual_writers


def _logits(lm, prompts, interventions):
    batch = lm.tokenize([lm.format(p) for p in prompts])
    with lm.session(interventions, batch.prompt_len):
        return lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, -1]


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt_neox"])
def test_per_row_ablation_equals_one_direction_per_pass(arch):
    lm = tiny_lm(arch)
    prompts = ["hello", "a longer prompt here", "mid size"]
    dirs = torch.randn(3, 32)
    dirs[1] = 0.0  # a zero row: that row is left alone
    batched = _logits(lm, prompts, [Ablate(dirs)])
    for i, p in enumerate(prompts):
        single = _logits(lm, [p], [Ablate(dirs[i])] if i != 1 else [])
        assert (batched[i] - single[0]).abs().max() <= 1e-5


def test_per_row_ablation_removes_each_rows_own_direction():
    lm = tiny_lm("llama")
    dirs = torch.randn(2, 32)
    cap = Capture(layers="all", sites="resid_post")
    batch = lm.tokenize([lm.format(p) for p in ["abc", "defgh"]])
    with lm.session([Ablate(dirs), cap], batch.prompt_len):
        lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    unit = dirs / dirs.norm(dim=-1, keepdim=True)
    for layer in range(3):
        h, _ = cap.stacked(layer)
        assert torch.einsum("btd,bd->bt", h, unit).abs().max() <= 1e-5
    with pytest.raises(InputError, match="per-row directions for 2 rows"):
        _logits(lm, ["a", "b", "c"], [Ablate(dirs)])


def test_forward_to_layer_gradient_matches_finite_differences():
    lm = tiny_lm("qwen2")
    batch = lm.tokenize([lm.format("steer me"), lm.format("hi")])
    v = torch.randn(2, 32, dtype=torch.float64).float().requires_grad_(True)

    def objective(vec: torch.Tensor, grad: bool) -> torch.Tensor:
        h = lm.forward_to_layer(batch, 2, [Add(vec, strength=1.0, layers=0)], grad=grad)  # [B, T, d]
        return (h * batch.attention_mask[..., None]).pow(2).sum()

    loss = objective(v, True)
    loss.backward()
    assert v.grad is not None and v.grad.abs().sum() > 0
    eps = 1e-2
    for row, k in [(0, 3), (1, 17)]:
        e = torch.zeros_like(v)
        e[row, k] = eps
        with torch.no_grad():
            fd = (objective(v.detach() + e, False) - objective(v.detach() - e, False)) / (2 * eps)
        assert float(fd) == pytest.approx(float(v.grad[row, k]), rel=2e-2, abs=1e-3)


def test_forward_to_layer_stops_there():
    lm = tiny_lm("llama")
    seen: list[int] = []
    hooks = [
        layer.register_forward_hook(lambda m, a, o, i=i: seen.append(i))
        for i, layer in enumerate(lm.model.model.layers)
    ]
    try:
        h = lm.forward_to_layer(lm.tokenize(["abc"]), 1)
    finally:
        for x in hooks:
            x.remove()
    assert seen == [0, 1] and h.shape[-1] == 32 and not h.requires_grad


@pytest.mark.parametrize("arch", [a for a in ARCHS if not arch_spec(tiny_model(a)).norm_after_write])
def test_projecting_a_direction_out_of_every_residual_writer_empties_the_stream_along_it(arch):
    """residual_writers names the right parameters and axes: with r projected out of all of them,
    no layer's output has any component along r (Gemma 2/3 put a norm after the write: excluded)."""
    model = copy.deepcopy(tiny_model(arch, seed=5))
    r = torch.randn(32)
    r = r / r.norm()
    with torch.no_grad():
        for w in residual_writers(model):
            p = w.param.data.movedim(w.axis, -1)  # [..., d]
            p -= (p @ r)[..., None] * r
    cap = Capture(layers="all", sites="resid_post")
    ids = torch.randint(4, 100, (2, 9))
    with torch.no_grad(), intervene(model, cap):
        model(input_ids=ids)
    for layer in range(3):
        h, _ = cap.stacked(layer)
        assert (h @ r).abs().max() <= 1e-5 * max(1.0, float(h.abs().max())), (arch, layer)


def test_residual_writers_cover_embeddings_attention_and_mlp():
    kinds = {w.kind for w in residual_writers(tiny_model("mixtral"))}
    assert kinds == {"embed", "attn", "mlp"}
    gpt2 = [w.name for w in residual_writers(tiny_model("gpt2")) if w.kind == "embed"]
    assert gpt2 == ["transformer.wte.weight", "transformer.wpe.weight"]
    assert arch_spec(tiny_model("gemma3")).norm_after_write and not arch_spec(tiny_model("llama")).norm_after_write


def test_hook_entries_and_prompt_lengths_context():
    lm = tiny_lm("llama")
    mgr = hook_manager(lm.model)
    seen = []
    entry = HookEntry(1, "resid_post", lambda h, info: seen.append(info.prompt_len.tolist()), capture=True)
    eid = mgr.add_entry(entry)
    try:
        batch = lm.tokenize(["abcd"])
        with mgr.prompt_lengths(torch.tensor([3])):
            with torch.no_grad():
                lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
            assert mgr.fixed_prompt_len.tolist() == [3]
        assert mgr.fixed_prompt_len is None  # restored on exit
        assert seen == [[3]]
    finally:
        mgr.remove(eid)
    assert not mgr.slots  # the last entry removed: no PyTorch hook left


def test_report_modules_do_not_import_the_engine_run_machinery():
    """A study's report and plots render from its summary alone: importing them loads no flow, no
    run store, no worker and no executor (``steerlab report RUN_DIR`` needs none of them)."""
    code = (
        "import sys, steerlab.experiments.studies.refusal.report, steerlab.experiments.studies.refusal.plots, "
        "steerlab.report.format; "
        "bad = [m for m in sys.modules if m.endswith('.flow') or m.startswith(('steerlab.experiments.engine.run', "
        "'steerlab.experiments.engine.store', 'steerlab.experiments.engine.worker', "
        "'steerlab.experiments.engine.executors'))]; "
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1000:]
