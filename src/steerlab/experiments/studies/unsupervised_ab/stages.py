"""The two stages of the unsupervised A/B study, run on a worker: ab (letter logits of every condition) and proxy (open answers, parsed and optionally judged)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from steerlab.experiments.engine.registry import Stage
from steerlab.experiments.studies.unsupervised_ab.config import (
    UnsupervisedABConfig,
)
from steerlab.experiments.studies.unsupervised_ab.records import ABRow, ProxyRow, UnsupervisedCell

if TYPE_CHECKING:  # torch-heavy modules: imported where used, so loading a config stays light
    from steerlab.evals.ab import ABQuestion
    from steerlab.evals.ab_choice import ChoiceJudge
    from steerlab.experiments.engine.worker import WorkerContext
    from steerlab.models.hf import LanguageModel


def _prompt(cfg: UnsupervisedABConfig, lm: LanguageModel, cell: UnsupervisedCell, prefix: str | None) -> str:
    conv = lm.format(cell.question, cfg.evaluation.system_prompt)
    return conv + (prefix or "")


def _score(
    cfg: UnsupervisedABConfig, lm: LanguageModel, cells: Sequence[UnsupervisedCell], ctx: WorkerContext
) -> list[ABRow]:
    """Letter logits for a batch of ab cells: a question's conditions in equal passes of at most
    ``evaluation.batch_size`` rows, the layers below the source once per pass."""
    from steerlab.evals.ab import check_letter_position, default_answer_prefix, letter_token_ids
    from steerlab.evals.ab_scoring import score_conditions
    from steerlab.interventions.spec import batch_interventions

    ev = cfg.evaluation
    prefix = default_answer_prefix(lm) if ev.answer_prefix is None else ev.answer_prefix
    ids = ctx.cached(f"letters:{prefix!r}", lambda: letter_token_ids(lm, "ABCDEFGH", prefix))
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(cells):
        groups.setdefault(c.question_id, []).append(i)
    out: list[ABRow | None] = [None] * len(cells)
    for group in groups.values():
        first = cells[group[0]]
        prompt = _prompt(cfg, lm, first, prefix)
        ctx.cached(f"letter-check:{prefix!r}", lambda p=prompt: check_letter_position(lm, p, "A", ids["A"]))  # once
        n_passes = -(-len(group) // ev.batch_size)
        for idx in (group[k::n_passes] for k in range(n_passes)):  # equal passes, no small remainder
            ivs = batch_interventions([cells[i].intervention for i in idx], ctx.vectors)
            scores = score_conditions(
                lm, prompt, (ids[first.behavior_letter], ids[first.other_letter]), ivs, len(idx), mass=ev.letter_mass
            )
            for i, sc in zip(idx, scores):
                out[i] = ABRow(
                    **cells[i].model_dump(exclude={"version"}),
                    logit_behavior=round(sc.logit_behavior, 5),
                    logit_other=round(sc.logit_other, 5),
                    logit_diff=round(sc.logit_diff, 5),
                    p_behavior=round(sc.p_behavior, 6),
                    matches=sc.matches,
                    letter_mass=None if sc.mass is None else round(sc.mass, 6),
                )
    assert all(r is not None for r in out), "every cell of the batch belongs to one question group"
    return [r for r in out if r is not None]


def _answer(
    cfg: UnsupervisedABConfig, lm: LanguageModel, cells: Sequence[UnsupervisedCell], ctx: WorkerContext
) -> list[ProxyRow]:
    """Open answers for a batch of proxy cells, parsed (and judged) for the chosen option."""
    from steerlab.evals.ab_choice import parse_choice
    from steerlab.interventions.spec import batch_interventions
    from steerlab.models.backend import user

    p = cfg.proxy_check
    convs = [user(c.question, cfg.evaluation.system_prompt) for c in cells]
    replies = lm.complete(
        convs,
        max_new_tokens=p.max_new_tokens,
        temperature=0.0,
        batch_size=len(cells),
        interventions=batch_interventions([c.intervention for c in cells], ctx.vectors),
    )
    parsed = [parse_choice(r.text, c.letters, c.options) for c, r in zip(cells, replies)]
    judged: list[str | None] = [None] * len(cells)
    if p.judge_model:
        judged = _judge(cfg, ctx).judge([_question(c) for c in cells], [r.text for r in replies])
    return [
        ProxyRow(**c.model_dump(exclude={"version"}), output=r.text, finish_reason=r.finish_reason, parsed=a, judged=j)
        for c, r, a, j in zip(cells, replies, parsed, judged)
    ]


def _question(cell: UnsupervisedCell) -> ABQuestion:
    from steerlab.evals.ab import parse_question

    return parse_question(cell.question, f" ({cell.behavior_letter})", f" ({cell.other_letter})")


def _judge(cfg: UnsupervisedABConfig, ctx: WorkerContext) -> ChoiceJudge:
    from steerlab.evals.ab_choice import ChoiceJudge

    spec = cfg.proxy_check.judge_model
    assert spec is not None, "called only when proxy_check.judge_model is set"
    judge: ChoiceJudge = ctx.judge(spec, ChoiceJudge, batch_size=cfg.proxy_check.batch_size)
    return judge


def _length(cfg: UnsupervisedABConfig, cell: UnsupervisedCell) -> int:
    return len(cell.question)


#: letter logits of every question under every condition; open answers of the proxy check
AB = Stage("ab", ABRow, _score, _length)

PROXY = Stage("proxy", ProxyRow, _answer, _length)
