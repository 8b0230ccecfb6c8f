"""Work for a worker that is not a grid of cells (module level, so it can be sent to a Ray actor), and the
files the driver writes: candidates, refusal tokens, the orthogonalisation check, random controls, the
saved direction and model."""

from __future__ import annotations

from pathlib import Path

from steerlab.experiments.engine.config import ModelSpec
from steerlab.experiments.studies.refusal_direction.config import (
    ScoringConfig,
)
from steerlab.experiments.studies.refusal_direction.summary import (
    OrthogonalizationCheck,
    RefusalTokensRecord,
)
from steerlab.models.hf import LanguageModel
from steerlab.names import Site
from steerlab.vectors.vector import SteeringVector, VectorSet


def fit_candidates(
    lm: LanguageModel, harmful: list[str], harmless: list[str], layers: list[int] | str, site: Site, batch_size: int
) -> VectorSet:
    """Difference-of-means candidates at every post-instruction position × layer (a worker task)."""
    from steerlab.progress import progress_bar
    from steerlab.vectors.candidates import candidate_directions

    with progress_bar("candidates: capture train prompts") as bar:
        return candidate_directions(lm, harmful, harmless, layers, site=site, batch_size=batch_size, progress=bar)


def find_tokens(lm: LanguageModel, harmful: list[str], s: ScoringConfig, batch_size: int) -> RefusalTokensRecord:
    """The model's refusal tokens from its greedy replies to ``harmful`` (a worker task; see
    steerlab.evals.refusal_score). How specific they are shows in the baseline refusal scores."""
    from dataclasses import asdict

    from steerlab.evals.refusal_score import RefusalTokens, find_refusal_tokens, opener_tokens

    if s.refusal_openers:
        ids = opener_tokens(lm, s.refusal_openers)
        toks = RefusalTokens(
            tuple(ids),
            tuple(lm.tokenizer.decode([t]) for t in ids),
            (0,) * len(ids),
            "configured_openers",
            0,
            0,
            0.0,
            None,
        )
    else:
        from steerlab.progress import progress_bar

        with progress_bar("refusal tokens: greedy replies to train prompts") as bar:
            toks = find_refusal_tokens(
                lm,
                harmful,
                max_new_tokens=s.discovery_tokens,
                max_tokens=s.max_refusal_tokens,
                min_count=s.min_refusal_count,
                batch_size=batch_size,
                progress=bar,
            )
    return RefusalTokensRecord(**{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(toks).items()})


def check_orthogonalization(lm: LanguageModel, direction: SteeringVector, prompts: list[str]) -> OrthogonalizationCheck:
    """Orthogonalised weights vs hook ablation on ``prompts``: last-position logits, and how much of the
    direction is left in every layer's residual stream of the edited model (a worker task)."""
    import torch

    from steerlab.evals.refusal_score import last_position_logits, next_token_kl
    from steerlab.interventions import Ablate, Capture, intervene
    from steerlab.interventions.orthogonalize import orthogonalized_copy, weight_equivalent_ablation

    batch = lm.tokenize([lm.format(p) for p in prompts])
    olm, report = orthogonalized_copy(lm, direction)
    with weight_equivalent_ablation(lm.model, direction):
        hooked = last_position_logits(lm, batch)
    ablated = last_position_logits(lm, batch, [Ablate(direction)])
    cap = Capture(layers="all", sites="resid_post")
    with intervene(olm.model, cap):
        orth = last_position_logits(olm, batch)
    floor = None
    if lm.model.dtype != torch.float32:  # what the run dtype alone changes: the same hooks on a float32 copy
        import copy

        from steerlab.models.hf import LanguageModel as _LM

        f32 = _LM(model=copy.deepcopy(lm.model).float(), tokenizer=lm.tokenizer, model_id=lm.model_id, chat=lm.chat)
        f32.model.__dict__.pop("_steerlab_hook_manager", None)
        floor = float((last_position_logits(f32, batch, [Ablate(direction)]) - ablated).abs().max())
        del f32
    r = direction.vector / direction.vector.norm()
    worst = 0.0
    for layer in range(olm.n_layers):
        h, mask = cap.stacked(layer)
        h = h[mask]  # real tokens only [N, d]
        worst = max(worst, float(((h @ r).abs() / h.norm(dim=-1).clamp_min(1e-12)).max()))
    del olm
    return OrthogonalizationCheck(
        n_prompts=len(prompts),
        max_abs_logit_diff_vs_equivalent_hooks=float((orth - hooked).abs().max()),
        max_abs_logit_diff_vs_ablate=float((orth - ablated).abs().max()),
        mean_kl_vs_ablate=float(next_token_kl(ablated, orth).mean()),
        max_abs_logit=float(hooked.abs().max()),
        max_residual_projection=worst,
        untied=report.untied,
        norm_after_write=report.norm_after_write,
        equivalent_to=report.equivalent_to,
        dtype=str(lm.model.dtype).removeprefix("torch."),
        max_abs_logit_diff_ablate_vs_float32=floor,
    )


# ---------------------------------------------------------------------------- driver-side files


def random_controls(cands: VectorSet, n: int, seed: int) -> list[SteeringVector]:
    """``n`` isotropic random directions with the norm of the last-position candidate at the middle
    layer, read and added at that layer (a matched null for bypass, induce and KL)."""
    from steerlab.vectors.random import random_like

    if n == 0:
        return []
    layers = sorted({v.layer for v in cands.values()})
    mid = layers[len(layers) // 2]
    ref = max((v for v in cands.values() if v.layer == mid), key=lambda v: v.meta.extra["position"])
    return random_like(ref, n, seed=seed)


def save_direction(path: Path, v: SteeringVector) -> SteeringVector:
    """The chosen candidate, renamed ``refusal_direction``, written in the core vector format (driver)."""
    from dataclasses import replace

    from steerlab.vectors.io import save_vectors

    out = SteeringVector(
        v.vector, replace(v.meta, name="refusal_direction", extra={**v.meta.extra, "candidate": v.name})
    )
    save_vectors(path, [out])
    return out


def save_model(out: Path, spec: ModelSpec, direction: SteeringVector, norm_preserving: bool) -> None:
    """Load the model on the driver, orthogonalise it and write it as a Hugging Face directory (once)."""
    from steerlab.interventions.orthogonalize import orthogonalize, save_orthogonalized
    from steerlab.models.load import load_model

    if (out / "config.json").exists():
        return
    lm = load_model(spec.id, device="cpu", dtype=spec.dtype)
    report = orthogonalize(lm.model, direction, norm_preserving=norm_preserving)
    save_orthogonalized(
        lm,
        out,
        direction=direction,
        report=report,
        overwrite=True,
        provenance={"direction_file": f"direction_{out.name.removeprefix('orthogonalized_')}.safetensors"},
    )


#: run by :func:`reload_replies` in a fresh interpreter: plain transformers, no steerlab import
_RELOAD_SCRIPT = r"""
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
job = json.load(sys.stdin)
tok = AutoTokenizer.from_pretrained(job["dir"])
tok.padding_side = "left"
if tok.pad_token is None:
    tok.pad_token = tok.eos_token
model = AutoModelForCausalLM.from_pretrained(job["dir"], dtype=getattr(torch, job["dtype"])).eval()
out = []
for s in range(0, len(job["texts"]), job["batch_size"]):
    enc = tok(job["texts"][s : s + job["batch_size"]], return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        gen = model.generate(**enc, max_new_tokens=job["max_new_tokens"], do_sample=False,
                             eos_token_id=job["eos"], pad_token_id=tok.pad_token_id)
    for row in gen[:, enc["input_ids"].shape[1]:].tolist():
        n = next((j for j, t in enumerate(row) if t in job["eos"]), len(row))
        out.append(tok.decode(row[:n], skip_special_tokens=True))
json.dump({"replies": out, "dtype": str(next(model.parameters()).dtype)}, sys.stdout)
"""


def reload_replies(
    lm: LanguageModel, saved: Path, prompts: list[str], max_new_tokens: int, batch_size: int
) -> tuple[list[str], str]:
    """Greedy replies of the saved orthogonalised model, loaded by plain transformers in a fresh Python
    process, to ``prompts`` formatted exactly as ``lm`` formats them (a worker task).

    Returns the replies (cut at ``lm``'s stop strings) and the dtype the reloaded weights have.
    """
    import json
    import subprocess
    import sys

    from steerlab.errors import InputError
    from steerlab.models.sampling import cut_at_stops

    dtype = str(next(lm.model.parameters()).dtype).removeprefix("torch.")
    job = {
        "dir": str(saved),
        "dtype": dtype,
        "texts": [lm.format(p) for p in prompts],
        "eos": sorted(lm._eos_ids()),
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
    }
    done = subprocess.run(
        [sys.executable, "-c", _RELOAD_SCRIPT], input=json.dumps(job), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise InputError(f"{saved}: the saved model did not reload in a fresh process: {tail[0]}")
    res = json.loads(done.stdout)
    stops = lm.stop_strings()
    return [cut_at_stops(r, stops)[0] for r in res["replies"]], str(res["dtype"])
