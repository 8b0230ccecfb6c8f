"""The unsupervised A/B study's numbers from its rows: per-condition statistics, method × scale tables,
best vectors chosen on the selection half and reported on the other half, violins, the proxy check.

Held-out selection (``evaluation.held_out``, the default): every data set's questions are split
into two disjoint halves (:func:`split_halves`, seeded, stratified by which letter is the
behaviour). The full vector × scale grid runs on the *selection* half, where each vector's best
scale and each method's ranking are chosen (in-sample there); only the chosen conditions and the
unsteered baseline run on the *report* half, whose numbers (paired against scale 0 on the same
questions) are the estimates of an effect.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from steerlab.experiments.studies.unsupervised_ab.summary import (
    METHODS,
    ABSetInfo,
    BestVector,
    ConditionStats,
    DatasetSummary,
    HeldOut,
    MethodScale,
    ProxyStats,
    VectorInfo,
    Violin,
)
from steerlab.stats.estimates import mean, rate

if TYPE_CHECKING:
    from steerlab.experiments.studies.unsupervised_ab.config import UnsupervisedABConfig
    from steerlab.experiments.studies.unsupervised_ab.records import ABRow, ProxyRow
    from steerlab.vectors.vector import SteeringVector


def vector_info(v: SteeringVector) -> VectorInfo:
    """Diagnostics of a trained vector, read from its metadata."""
    x: dict[str, Any] = v.meta.extra
    return VectorInfo(
        name=v.name,
        method=v.meta.method,
        layer=v.layer,
        site=v.site,
        norm=round(v.norm, 6),
        target_layer=x.get("target_layer"),
        objective_initial=x.get("objective_initial"),
        objective_final=x.get("objective_final"),
        singular_value=x.get("singular_value"),
        residual=x.get("residual"),
        relative_gap=x.get("relative_gap"),
        degenerate=x.get("degenerate"),
        activation_norm=v.meta.activation_norm,
        resid_norm=x.get("resid_norm"),
    )


def split_halves(questions: Sequence[tuple[str, bool]], seed: int) -> tuple[list[str], list[str]]:
    """Disjoint (selection, report) halves of question ids, seeded, stratified by a flag.

    Args:
        questions: ``(question id, flag)``, the flag being "the behaviour letter comes first", so
            both halves stay rebalanced.
        seed: the split's seed (the same split on every run with that seed).

    Example:
        >>> split_halves([("a", True), ("b", True), ("c", False), ("d", False)], 0)[0].__len__()
        2
    """
    rng = np.random.default_rng([seed, 2])
    sel: list[str] = []
    rep: list[str] = []
    for flag in (True, False):
        ids = sorted(q for q, f in questions if f == flag)
        order = [ids[i] for i in rng.permutation(len(ids))]
        cut = (len(ids) + (len(sel) <= len(rep))) // 2  # an odd stratum's extra question evens the halves out
        sel += order[:cut]
        rep += order[cut:]
    return sorted(sel), sorted(rep)


def _stats(rows: Sequence[ABRow], base: dict[str, ABRow], n_resamples: int, seed: int) -> ConditionStats:
    r0 = rows[0]
    masses = [r.letter_mass for r in rows if r.letter_mass is not None]
    stats = ConditionStats(
        method=r0.method,
        vector=r0.vector,
        scale=r0.scale,
        behavior=rate([bool(r.matches) for r in rows]),
        logit_diff=mean([float(r.logit_diff) for r in rows], n_resamples, seed),  # type: ignore[arg-type]
        mass=float(np.mean(masses)) if masses else None,
        delta_behavior=None,
        delta_logit=None,
    )
    if r0.vector is None:
        return stats
    b_rate = float(np.mean([bool(base[r.question_id].matches) for r in rows]))
    paired = [float(r.logit_diff) - float(base[r.question_id].logit_diff) for r in rows]  # type: ignore[arg-type]
    return stats.model_copy(
        update={
            "delta_behavior": (stats.behavior.value or 0.0) - b_rate,
            "delta_logit": mean(paired, n_resamples, seed),
        }
    )


def _method_table(
    rows: Sequence[ABRow], base: dict[str, ABRow], conds: list[ConditionStats], n_resamples: int, seed: int
) -> list[MethodScale]:
    """Per method and scale: the mean over the method's vectors, with a 95% interval from resampling
    questions (each question's value is its mean over the vectors, so vectors sharing questions are
    not counted as independent)."""
    per_q: dict[tuple[str, float], dict[str, list[ABRow]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.vector is not None:
            per_q[(r.method, r.scale)][r.question_id].append(r)
    qids = sorted(base)
    out = []
    for method in METHODS:
        mine = [c for c in conds if c.method == method]
        if not mine:
            continue
        n_vec = len({c.vector for c in mine})
        for scale in sorted({0.0, *(c.scale for c in mine)}):
            cells = {q: [base[q]] for q in qids} if scale == 0 else per_q[(method, scale)]
            qs = [q for q in qids if cells.get(q)]
            b = [c.behavior.value or 0.0 for c in mine if c.scale == scale] or [base_rate(base)]
            masses = [r.letter_mass for q in qs for r in cells[q] if r.letter_mass is not None]
            out.append(
                MethodScale(
                    method=method,
                    scale=scale,
                    behavior=mean([float(np.mean([bool(r.matches) for r in cells[q]])) for q in qs], n_resamples, seed),
                    behavior_min=min(b),
                    behavior_max=max(b),
                    logit_diff=mean(
                        [float(np.mean([float(r.logit_diff) for r in cells[q]])) for q in qs], n_resamples, seed
                    ),
                    mass=float(np.mean(masses)) if masses else None,
                    n_vectors=n_vec,
                    n_questions=len(qs),
                )
            )
    return out


def base_rate(base: dict[str, ABRow]) -> float:
    """The unsteered behaviour rate of ``base`` (question → unsteered row)."""
    return float(np.mean([bool(r.matches) for r in base.values()])) if base else 0.0


def _ranking(
    conds: list[ConditionStats], baseline: ConditionStats, degenerate: dict[str, bool | None]
) -> list[BestVector]:
    """Every vector at its best scale, ranked within its method."""
    best: dict[str, ConditionStats] = {}
    for c in conds:
        key = (
            c.delta_behavior or 0.0,
            c.delta_logit.value if c.delta_logit and c.delta_logit.value is not None else 0.0,
        )
        cur = best.get(c.vector)  # type: ignore[arg-type]
        if cur is None or key > (cur.delta_behavior or 0.0, cur.delta_logit.value or 0.0):  # type: ignore[union-attr]
            best[c.vector] = c  # type: ignore[index]
    out = []
    for method in METHODS:
        ranked = sorted(
            (c for c in best.values() if c.method == method),
            key=lambda c: (-(c.delta_behavior or 0.0), -(c.delta_logit.value or 0.0), c.vector),
        )  # type: ignore[union-attr]
        out += [
            BestVector(
                method=method,
                vector=c.vector,
                rank=i + 1,
                scale=c.scale,
                behavior=c.behavior,  # type: ignore[arg-type]
                baseline=baseline.behavior.value or 0.0,
                delta_behavior=c.delta_behavior or 0.0,
                delta_logit=c.delta_logit,
                mass=c.mass,
                degenerate=degenerate.get(c.vector),
            )  # type: ignore[arg-type]
            for i, c in enumerate(ranked)
        ]
    return out


def _violins(rows: Sequence[ABRow], base: dict[str, ABRow], best: list[BestVector], top_k: int) -> list[Violin]:
    """Logit differences per method × scale: for ``all``, every (vector, question) value pooled (a
    mixture over the method's vectors, so its spread does not shrink with how many vectors the method
    has); for ``top{k}`` the per-question mean over the k best vectors; for ``rank{r}`` one vector."""
    diff: dict[tuple[str, float], dict[str, float]] = defaultdict(dict)  # (vector, scale) → question → diff
    for r in rows:
        diff[(r.vector, r.scale)][r.question_id] = float(r.logit_diff)  # type: ignore[index,arg-type]
    qids = sorted(base)  # a fixed order: values line up question by question across violins
    scales = sorted({s for _, s in diff} | {0.0})
    groups: list[tuple[str, str, list[str]]] = []
    for method in METHODS:
        ranked = [b.vector for b in best if b.method == method]
        if not ranked:
            continue
        groups.append(("all", method, ranked))
        groups.append((f"top{top_k}", method, ranked[:top_k]))
        groups += [(f"rank{r + 1}", method, [ranked[r]]) for r in range(min(top_k, len(ranked)))]
    out = []
    for group, method, vecs in groups:
        for s in scales:
            if s == 0:
                values = [float(base[q].logit_diff) for q in qids]  # type: ignore[arg-type]
            elif group == "all":
                values = [diff[(v, s)][q] for v in vecs for q in qids if q in diff[(v, s)]]
            else:
                values = [float(np.mean([diff[(v, s)][q] for v in vecs])) for q in qids]
            out.append(Violin(group=group, method=method, scale=s, values=[round(x, 4) for x in values]))
    return out


def _held_out(rows: Sequence[ABRow], best: list[BestVector], n_best: int, n_resamples: int, seed: int) -> list[HeldOut]:
    """Each method's ``n_best`` best conditions (chosen elsewhere) on ``rows``, paired against scale 0."""
    base = {r.question_id: r for r in rows if r.vector is None}
    by_cond: dict[tuple[str | None, float], list[ABRow]] = defaultdict(list)
    for r in rows:
        if r.vector is not None:
            by_cond[(r.vector, r.scale)].append(r)
    out = []
    for b in best:
        mine = [r for r in by_cond.get((b.vector, b.scale), []) if r.question_id in base]
        if b.rank > n_best or not mine:
            continue
        zero = [base[r.question_id] for r in mine]
        out.append(
            HeldOut(
                method=b.method,
                vector=b.vector,
                rank=b.rank,
                scale=b.scale,
                selection_delta_behavior=b.delta_behavior,
                behavior=rate([bool(r.matches) for r in mine]),
                baseline=rate([bool(r.matches) for r in zero]),
                delta_behavior=mean(
                    [float(r.matches) - float(z.matches) for r, z in zip(mine, zero)], n_resamples, seed
                ),
                delta_logit=mean(
                    [float(r.logit_diff) - float(z.logit_diff) for r, z in zip(mine, zero)], n_resamples, seed
                ),
                question_ids=sorted(r.question_id for r in mine),
            )
        )
    return out


def summarise_dataset(
    cfg: UnsupervisedABConfig,
    rows: Sequence[ABRow],
    info: ABSetInfo,
    degenerate: dict[str, bool | None],
    halves: tuple[list[str], list[str]] | None = None,
    n_best: int = 1,
) -> DatasetSummary:
    """Every table of one model on one data set (A/B rows only).

    Args:
        halves: (selection, report) question ids; None = no split (every number is in-sample).
        n_best: how many of each method's best conditions to report on the report half.
    """
    ev = cfg.evaluation
    selection = set(halves[0]) if halves else {r.question_id for r in rows}
    report = set(halves[1]) if halves else set()
    sel_rows = [r for r in rows if r.question_id in selection]
    base = {r.question_id: r for r in sel_rows if r.vector is None}
    by_cond: dict[tuple[str, float], list[ABRow]] = defaultdict(list)
    for r in sel_rows:
        if r.vector is not None:
            by_cond[(r.vector, r.scale)].append(r)
    baseline = _stats(list(base.values()), base, ev.bootstrap_resamples, cfg.seed)
    conds = [_stats(rs, base, ev.bootstrap_resamples, cfg.seed) for _, rs in sorted(by_cond.items())]
    best = _ranking(conds, baseline, degenerate)
    steered = [r for r in sel_rows if r.vector is not None]
    rep_rows = [r for r in rows if r.question_id in report]
    rep_base = [r for r in rep_rows if r.vector is None]
    return DatasetSummary(
        **info.model_dump(),
        n_questions=len(base),
        letters_a=sum(r.letters.index(r.behavior_letter) < r.letters.index(r.other_letter) for r in base.values()),
        baseline=baseline,
        conditions=conds,
        methods=_method_table(sel_rows, base, conds, ev.bootstrap_resamples, cfg.seed),
        best=best,
        violins=_violins(steered, base, best, ev.top_k),
        selection_ids=sorted(selection),
        report_ids=sorted(report),
        report_baseline=_stats(rep_base, {}, ev.bootstrap_resamples, cfg.seed) if rep_base else None,
        held_out=_held_out(rep_rows, best, n_best, ev.bootstrap_resamples, cfg.seed),
    )


def summarise_datasets(
    cfg: UnsupervisedABConfig,
    rows: Sequence[ABRow],
    info: dict[str, ABSetInfo],
    vectors: list[VectorInfo],
    halves: dict[str, tuple[list[str], list[str]]] | None = None,
    n_best: int = 1,
) -> dict[str, DatasetSummary]:
    """One model's per-data-set summaries from its A/B rows (see :func:`summarise_dataset`)."""
    degenerate = {v.name: v.degenerate for v in vectors}
    return {
        name: summarise_dataset(
            cfg, [r for r in rows if r.dataset == name], i, degenerate, halves[name] if halves else None, n_best
        )
        for name, i in info.items()
    }


def top_vectors(ds: DatasetSummary, k: int) -> list[tuple[str, float]]:
    """(vector, best scale) of the top ``k`` vectors of every method on a data set."""
    return [(b.vector, b.scale) for b in ds.best if b.rank <= k]


def proxy_stats(proxy_rows: Sequence[ProxyRow], ab_rows: Sequence[ABRow], *, judge: bool = False) -> list[ProxyStats]:
    """Agreement of the logit proxy with the parsed (and, with ``judge``, judged) open answers, per data set
    and condition."""
    logits = {(r.dataset, r.question_id, r.vector, r.scale): r for r in ab_rows}
    groups: dict[tuple[str, str, str | None, float], list[ABRow]] = defaultdict(list)
    for r in proxy_rows:
        groups[(r.dataset, r.method, r.vector, r.scale)].append(r)
    out = []
    for (dataset, method, vector, scale), rs in groups.items():
        prefer = {
            r.question_id: (
                r.behavior_letter if logits[(dataset, r.question_id, vector, scale)].matches else r.other_letter
            )
            for r in rs
        }
        parsed = [r for r in rs if r.parsed is not None]
        judged = [r for r in rs if r.judged is not None]
        out.append(
            ProxyStats(
                dataset=dataset,
                method=method,
                vector=vector,
                scale=scale,
                n=len(rs),
                parsed=len(parsed),
                agreement=rate([r.parsed == prefer[r.question_id] for r in parsed]),
                behavior_by_answer=rate([r.parsed == r.behavior_letter for r in parsed]),
                behavior_by_logits=rate([prefer[r.question_id] == r.behavior_letter for r in parsed]),
                judged=len(judged) if judge else None,
                judge_agreement=rate([r.judged == prefer[r.question_id] for r in judged]) if judge else None,
                examples=[(r.output or "")[:160] for r in rs[:3]],
            )
        )
    return out
