"""The three stages of the refusal-direction study, run on a worker: score, generate, capability."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from steerlab.experiments.engine.registry import Stage
from steerlab.experiments.engine.worker import WorkerContext
from steerlab.experiments.studies.refusal_direction.config import (
    RefusalDirectionConfig,
)
from steerlab.experiments.studies.refusal_direction.records import (
    CapabilityRow,
    DirectionCell,
    GenerationRow,
    ScoreRow,
)
from steerlab.interventions.spec import NO_INTERVENTION
from steerlab.models.hf import LanguageModel

if TYPE_CHECKING:
    from steerlab.evals.llm_judge import LLMJudge


def score_batch(
    cfg: RefusalDirectionConfig, lm: LanguageModel, cells: Sequence[DirectionCell], ctx: WorkerContext
) -> list[ScoreRow]:
    """One forward pass: every row under its own candidate (per-row directions), plus one unsteered
    row per distinct prompt of the KL rows; refusal log-odds and KL at the last position."""
    from steerlab.evals.refusal_score import last_position_logits, next_token_kl, refusal_log_odds
    from steerlab.interventions.spec import batch_interventions

    kl_prompts = list(dict.fromkeys(c.prompt for c in cells if c.metric == "kl"))
    texts = [lm.format(c.prompt) for c in cells] + [lm.format(p) for p in kl_prompts]
    specs = [c.intervention for c in cells] + [NO_INTERVENTION] * len(kl_prompts)
    logits = last_position_logits(lm, lm.tokenize(texts), batch_interventions(specs, ctx.vectors))  # [B + K, V]
    base = {p: logits[len(cells) + i] for i, p in enumerate(kl_prompts)}
    rows = []
    for i, c in enumerate(cells):
        score = float(refusal_log_odds(logits[i : i + 1], c.refusal_tokens or [])[0])
        kl = float(next_token_kl(base[c.prompt][None], logits[i : i + 1])[0]) if c.metric == "kl" else None
        ok = math.isfinite(score) and (kl is None or math.isfinite(kl))
        rows.append(
            ScoreRow(
                **c.model_dump(exclude={"version"}),
                refusal_score=score if math.isfinite(score) else None,
                kl=kl if kl is None or math.isfinite(kl) else None,
                finite=ok,
            )
        )
    return rows


def generate_batch(
    cfg: RefusalDirectionConfig, lm: LanguageModel, cells: Sequence[DirectionCell], ctx: WorkerContext
) -> list[GenerationRow]:
    """Replies (hooks for ablate / add, the orthogonalised copy for orthogonalized), judged and guarded."""
    from steerlab.evals.refusal_markers import RefusalMarkerJudge
    from steerlab.interventions.spec import batch_interventions

    g, ev = cfg.generation, cfg.evaluation
    replies: dict[int, object] = {}
    for orth in (False, True):
        idx = [i for i, c in enumerate(cells) if (c.condition == "orthogonalized") == orth]
        if not idx:
            continue
        model = _orthogonalized(cfg, lm, ctx) if orth else lm
        sub = [cells[i] for i in idx]
        ivs = [] if orth else batch_interventions([c.intervention for c in sub], ctx.vectors)
        out = model.complete(
            [c.prompt for c in sub],
            max_new_tokens=g.max_new_tokens,
            temperature=g.temperature,
            seed=[c.seed for c in sub],
            batch_size=len(sub),
            interventions=ivs,
        )
        replies.update(zip(idx, out))
    prompts = [c.prompt for c in cells]
    outputs = [replies[i].text for i in range(len(cells))]  # type: ignore[attr-defined]
    markers = RefusalMarkerJudge().judge(prompts, outputs)
    judge = _llm_judge(cfg, ctx)
    llm = judge.judge(prompts, outputs) if judge is not None else [None] * len(cells)
    harmful = [i for i, c in enumerate(cells) if c.prompt_set == "harmful"]
    guard = _guard(cfg, ctx)
    verdicts = dict(zip(harmful, guard.classify([prompts[i] for i in harmful], [outputs[i] for i in harmful])))
    rows = []
    for i, c in enumerate(cells):
        words = len(outputs[i].split())
        v = verdicts.get(i)
        rows.append(
            GenerationRow(
                **c.model_dump(exclude={"version"}),
                output=outputs[i],
                finish_reason=replies[i].finish_reason,  # type: ignore[attr-defined]
                words=words,
                verdict_markers=markers[i],
                verdict_llm=llm[i],
                refused=(llm[i] or markers[i]) == "refusal",
                guard=v.label if v else None,
                guard_categories=list(v.categories) if v else [],
                unsafe=(v.label == "unsafe" and words >= ev.min_words) if v else None,
            )
        )
    return rows


def capability_batch(
    cfg: RefusalDirectionConfig, lm: LanguageModel, cells: Sequence[DirectionCell], ctx: WorkerContext
) -> list[CapabilityRow]:
    """Per-token KL(unsteered || intervened) and cross-entropy over the first ``capability_tokens``
    tokens of each cell's reference reply, teacher-forced after its prompt."""
    import torch

    from steerlab.interventions.spec import batch_interventions

    k = cfg.evaluation.capability_tokens
    prompts = [lm.format(c.prompt) for c in cells]
    refs = [c.reference or "" for c in cells]
    batch, c_ids = lm.tokenize_with_completions(prompts, refs)
    base_h = lm.hidden_states(batch)  # [B, T, d] unsteered
    steered: dict[int, torch.Tensor] = {}
    for orth in (False, True):
        idx = [
            i for i, c in enumerate(cells) if (c.condition == "orthogonalized") == orth and c.condition != "baseline"
        ]
        if not idx:
            continue
        sub = _sub_batch(batch, idx)
        if orth:
            h = _orthogonalized(cfg, lm, ctx).hidden_states(sub)
        else:
            h = lm.hidden_states(sub, batch_interventions([cells[i].intervention for i in idx], ctx.vectors))
        steered.update((i, h[j]) for j, i in enumerate(idx))
    width = batch.input_ids.shape[1]
    rows = []
    for i, c in enumerate(cells):
        n = min(len(c_ids[i]), k)
        if n == 0:
            rows.append(CapabilityRow(**c.model_dump(exclude={"version"}), n_tokens=0))
            continue
        start = width - len(c_ids[i]) - 1  # the position predicting the first reply token
        target = torch.tensor(c_ids[i][:n])
        with torch.inference_mode():
            lp_base = torch.log_softmax(lm.logits_for(base_h[i, start : start + n]).double().cpu(), -1)  # [n, V]
            lp = (
                lp_base
                if i not in steered
                else torch.log_softmax(lm.logits_for(steered[i][start : start + n]).double().cpu(), -1)
            )
        ce = float(-lp[torch.arange(n), target].mean())
        kl = 0.0 if i not in steered else float((lp_base.exp() * (lp_base - lp)).sum(-1).clamp_min(0).mean())
        rows.append(CapabilityRow(**c.model_dump(exclude={"version"}), ce=ce, kl=kl, n_tokens=n))
    return rows


def _sub_batch(batch: object, idx: list[int]) -> object:
    from steerlab.models.hf import Batch

    return Batch(
        batch.input_ids[idx],
        batch.attention_mask[idx],
        batch.prompt_len[idx],  # type: ignore[attr-defined]
        [batch.texts[i] for i in idx],
    )  # type: ignore[attr-defined]


def _orthogonalized(cfg: RefusalDirectionConfig, lm: LanguageModel, ctx: WorkerContext) -> LanguageModel:
    """The orthogonalised copy of ``lm`` for this batch's direction, made once per worker."""
    from steerlab.interventions.orthogonalize import orthogonalized_copy
    from steerlab.vectors.vector import data_hash

    d = ctx.vectors["direction"]
    key = f"orthogonalized:{lm.model_id}:{lm.config_hash}:{data_hash(d.vector.tolist())}:{cfg.interventions.norm_preserving}"
    return ctx.cached(key, lambda: orthogonalized_copy(lm, d, norm_preserving=cfg.interventions.norm_preserving)[0])


def _llm_judge(cfg: RefusalDirectionConfig, ctx: WorkerContext) -> LLMJudge | None:
    from steerlab.evals.llm_judge import LLMJudge

    spec = cfg.evaluation.llm_judge_model
    return ctx.judge(spec, LLMJudge, batch_size=cfg.generation.batch_size) if spec else None


def _guard(cfg: RefusalDirectionConfig, ctx: WorkerContext):  # noqa: ANN202
    from steerlab.evals.guard import make_guard

    ev = cfg.evaluation
    return ctx.cached(
        f"guard:{ev.guard_model}:{ev.guard_family}:{ev.min_words}",
        lambda: make_guard(
            ev.guard_model,
            family=ev.guard_family,
            batch_size=cfg.generation.batch_size,
            min_words=ev.min_words,
            load=lambda spec: ctx.aux_model(spec, batch_size=cfg.generation.batch_size),
        ),
    )


def guard_name(cfg: RefusalDirectionConfig) -> str:
    ev = cfg.evaluation
    if ev.guard_model is None:
        return f"proxy:non-refusal(min_words={ev.min_words})"
    return f"guard:{ev.guard_model}"


def cell_length(cfg: RefusalDirectionConfig, cell: DirectionCell) -> int:
    """Prompt (+ reference) length; orthogonalised-weight cells sort after all others, so they fill
    batches of their own (they run on another copy of the model)."""
    return len(cell.prompt) + len(cell.reference or "") + (1 << 30 if cell.condition == "orthogonalized" else 0)


#: candidates and controls scored on the validation split
SCORE = Stage("score", ScoreRow, score_batch, cell_length)
#: replies under every intervention on the test split (and the over-refusal set)
GENERATE = Stage("generate", GenerationRow, generate_batch, cell_length)
#: KL and cross-entropy of the unsteered replies on harmless test prompts
CAPABILITY = Stage("capability", CapabilityRow, capability_batch, cell_length)
