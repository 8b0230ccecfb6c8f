"""report.md for an unsupervised A/B study (seed 002), rendered from its summary and config only."""

from __future__ import annotations

from typing import Any

from steerlab.report.format import markdown_table, num, pct

LABELS = {"melbo": "MELBO", "power_iteration": "Power iteration", "random": "Random", "none": "unsteered"}


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}g}"


def _setup(cfg: Any) -> list[str]:
    t, ev = cfg.training, cfg.evaluation
    prompts = "; ".join(f"“{p}”" for p in t.prompts)
    lines = [
        f"- Training prompt(s): {prompts} (system: “{t.system_prompt or ''}”) — no labels, one forward pass per step",
        f"- Injection: vector of norm R = {t.radius:g} added at every token of `{t.site}` of the source layer; "
        "objective/Jacobian read at the output of the target layer (layers in the vector table below)",
        f"- MELBO: {cfg.melbo.n_vectors} vectors, objective on `{cfg.melbo.positions}`, p = {cfg.melbo.p:g}, "
        f"q = {cfg.melbo.q:g}, {cfg.melbo.steps} steps of {cfg.melbo.optimizer} (lr {cfg.melbo.lr:g}), "
        f"orthogonal: {'yes' if cfg.melbo.orthogonal else 'no'}, {cfg.melbo.batch} trained in parallel"
        + (
            " (orthogonal in parallel: not the sequential algorithm)"
            if cfg.melbo.orthogonal and cfg.melbo.batch > 1
            else ""
        ),
        f"- Power iteration: {cfg.power_iteration.n_vectors} vectors, objective on `{cfg.power_iteration.positions}`, "
        f"{cfg.power_iteration.iterations} iterations, block oversampled by {cfg.power_iteration.oversample}, "
        f"near-degenerate below a relative gap of {cfg.power_iteration.degenerate_gap:g}",
        f"- Random controls: {cfg.random.n_vectors} isotropic directions of norm R",
        f"- A/B evaluation: system prompt “{ev.system_prompt or ''}”, answer prefix "
        f"{'default' if ev.answer_prefix is None else repr(ev.answer_prefix)}, scales "
        f"({'s = norm of the added vector' if ev.unit_norm else 's × the norm-R vector'}) "
        f"{', '.join(f'{s:g}' for s in sorted([0.0, *ev.steered_scales]))} (both signs: {'yes' if ev.both_signs else 'no'}), "
        f"options past B: `{ev.multi_choice}`, rebalanced: {'yes' if ev.rebalance else 'no'}, seed {cfg.seed}",
    ]
    return lines


def _datasets(model: Any) -> list[str]:
    rows = [
        [
            d.name,
            f"`{d.source}`",
            d.behavior + (" (= not matching)" if d.invert else ""),
            d.n_rows,
            d.n_malformed,
            d.n_multi,
            d.policy,
            d.n_questions,
            f"{d.letters_a} / {d.n_questions}",
        ]
        for d in model.datasets.values()
    ]
    return markdown_table(
        [
            "Data set",
            "Source",
            "Behaviour letter",
            "Rows",
            "Malformed",
            "Options past B",
            "Policy",
            "Questions used",
            "Behaviour at the earlier letter",
        ],
        rows,
        ["l", "l", "l", "r", "r", "r", "l", "r", "r"],
    )


def _vectors(model: Any) -> list[str]:
    rows = []
    for v in model.vectors:
        obj = "–" if v.objective_initial is None else f"{v.objective_initial:.3g} → {v.objective_final:.3g}"
        rows.append(
            [
                v.name,
                LABELS.get(v.method, v.method),
                f"{v.layer} `{v.site}` → {v.target_layer}",
                f"{v.norm:.3g}",
                _f(v.resid_norm, 4),
                _f(v.activation_norm, 4),
                obj,
                _f(v.singular_value, 4),
                _f(v.residual, 2),
                _f(v.relative_gap, 2),
                "" if v.degenerate is None else ("⚠ yes" if v.degenerate else "no"),
            ]
        )
    return markdown_table(
        [
            "Vector",
            "Method",
            "Source → target layer",
            "Norm",
            "‖resid_post‖ at source",
            "‖site‖ at source",
            "MELBO objective (start → end)",
            "σ",
            "Residual",
            "Rel. gap",
            "Near-degenerate",
        ],
        rows,
        ["l", "l", "l", "r", "r", "r", "r", "r", "r", "r", "c"],
    )


def _norm_line(model: Any) -> str:
    """The source layer's activation norms, so a scale (the added norm) can be read against them."""
    v = next((v for v in model.vectors if v.resid_norm is not None), None)
    if v is None:
        return ""
    return (
        f"Source layer {v.layer}: mean residual-stream norm ‖resid_post‖ = {v.resid_norm:.4g}, mean norm at the "
        f"injection site `{v.site}` = {_f(v.activation_norm, 4)} (unsteered, over the training prompt's tokens); "
        "a scale s adds a vector of norm s."
    )


def _method_tables(ds: Any) -> list[str]:
    scales = sorted({m.scale for m in ds.methods})
    head = ["Method", *[f"Scale {s:g}" for s in scales]]
    out = []
    for title, cell in (
        (
            f"{ds.behavior} % (mean over vectors, 95% interval over questions; range over vectors)",
            lambda m: f"{pct(m.behavior, 1)} (vectors {100 * m.behavior_min:.0f}–{100 * m.behavior_max:.0f})",
        ),
        ("mean logit difference (mean over vectors, 95% interval over questions)", lambda m: num(m.logit_diff)),
        ("letter mass p(A) + p(B)", lambda m: "–" if m.mass is None else f"{m.mass:.2f}"),
    ):
        rows = []
        for method in dict.fromkeys(m.method for m in ds.methods):
            by = {m.scale: m for m in ds.methods if m.method == method}
            rows.append([LABELS.get(method, method), *[cell(by[s]) if s in by else "–" for s in scales]])
        out += [
            f"**{title}** — {_where(ds)}, {ds.methods[0].n_questions} questions per vector",
            "",
            *markdown_table(head, rows, ["l", *["r"] * len(scales)]),
            "",
        ]
    return out


def _where(ds: Any) -> str:
    return "selection half" if ds.report_ids else "all questions (no held-out split: in-sample)"


def _held_out(ds: Any) -> list[str]:
    """The best conditions, chosen on the selection half, on the report half — the stated effects."""
    if not ds.report_ids:
        return [
            "**No held-out half** (`evaluation.held_out: false`): the best vectors below are chosen and "
            "measured on the same questions — IN-SAMPLE, biased upwards, not estimates of an effect.",
            "",
        ]
    rb = ds.report_baseline
    rows = [
        [
            LABELS.get(h.method, h.method),
            h.rank,
            h.vector,
            f"{h.scale:+g}",
            f"{100 * h.selection_delta_behavior:+.0f} pts",
            pct(h.behavior),
            pct(h.baseline),
            _pts(h.delta_behavior),
            num(h.delta_logit),
            h.behavior.n,
        ]
        for h in ds.held_out
    ]
    return [
        f"**Held-out estimates** — vector and scale chosen on the selection half ({len(ds.selection_ids)} "
        f"questions), measured on the disjoint report half ({len(ds.report_ids)} questions; unsteered there: "
        f"{pct(rb.behavior, 1) if rb else '–'}); Δ paired per question against scale 0",
        "",
        *markdown_table(
            [
                "Method",
                "Rank",
                "Vector",
                "Scale (chosen)",
                "Δ on selection half (in-sample)",
                f"{ds.behavior} % (report half)",
                "Scale 0 (report half)",
                "Δ behaviour (paired)",
                "Δ logit (paired)",
                "n",
            ],
            rows,
            ["l", "r", "l", "r", "r", "l", "l", "l", "l", "r"],
        ),
        "",
    ]


def _pts(e: Any) -> str:
    """A paired difference of rates in points with its interval."""
    if e is None or e.value is None:
        return "–"
    return f"{100 * e.value:+.0f} pts [{100 * e.low:+.0f}, {100 * e.high:+.0f}]"


def _best(ds: Any, k: int) -> list[str]:
    rows = [
        [
            LABELS.get(b.method, b.method),
            b.rank,
            b.vector,
            f"{b.scale:+g}",
            pct(b.behavior),
            pct(b.baseline),
            f"{100 * b.delta_behavior:+.0f} pts",
            num(b.delta_logit),
            _f(b.mass, 2),
            "" if b.degenerate is None else ("⚠" if b.degenerate else ""),
        ]
        for b in ds.best
        if b.rank <= k
    ]
    return markdown_table(
        [
            "Method",
            "Rank",
            "Vector",
            "Best scale",
            f"{ds.behavior} %",
            "Baseline",
            "Δ",
            "Δ logit (paired)",
            "Mass",
            "Degenerate",
        ],
        rows,
        ["l", "r", "l", "r", "l", "r", "r", "l", "r", "c"],
    )


def _per_vector(ds: Any) -> list[str]:
    scales = sorted({0.0, *(c.scale for c in ds.conditions)})
    by: dict[str, dict[float, Any]] = {}
    for c in ds.conditions:
        by.setdefault(c.vector, {0.0: ds.baseline})[c.scale] = c
    rows = [[v, *[f"{100 * by[v][s].behavior.value:.0f}" if s in by[v] else "–" for s in scales]] for v in by]
    return markdown_table(["Vector", *[f"{s:g}" for s in scales]], rows, ["l", *["r"] * len(scales)])


def _proxy(model: Any) -> list[str]:
    if not model.proxy:
        return []
    rows = [
        [
            p.dataset,
            LABELS.get(p.method, p.method),
            p.vector or "–",
            f"{p.scale:g}",
            p.n,
            p.parsed,
            pct(p.agreement),
            pct(p.behavior_by_answer),
            pct(p.behavior_by_logits),
            "–" if p.judge_agreement is None else f"{pct(p.judge_agreement)} (n={p.judged})",
        ]
        for p in model.proxy
    ]
    lines = [
        "### Logit proxy vs open answers",
        "",
        "Greedy open answers (no answer prefix) to the first questions of each data set, unsteered and under "
        "each method's top vectors at their best scale; the option chosen is parsed from the text "
        "(steerlab.evals.ab_choice).",
        "",
        *markdown_table(
            [
                "Data set",
                "Method",
                "Vector",
                "Scale",
                "n",
                "Parsed",
                "Agreement",
                "Behaviour (answers)",
                "Behaviour (logits)",
                "Judge agreement",
            ],
            rows,
            ["l", "l", "l", "r", "r", "r", "l", "l", "l", "l"],
        ),
        "",
    ]
    ex = next((p for p in model.proxy if p.vector is None and p.examples), None)
    if ex is not None:
        lines += (
            [f"Example unsteered answers ({ex.dataset}):", ""]
            + [f"> {e.replace(chr(10), ' ')}" for e in ex.examples]
            + [""]
        )
    return lines


def render_report(cfg: Any, summary: Any, plots: dict[str, dict[str, str]]) -> str:
    """The Markdown report (an ``UnsupervisedABConfig``, its ``UnsupervisedSummary``, plot files per model)."""
    k = cfg.evaluation.top_k
    lines = [
        f"# Unsupervised steering vectors on A/B questions: {cfg.name}",
        "",
        "Seed 002: steering vectors found from one prompt without labels — MELBO, the top singular vectors of "
        "the source → target Jacobian (block power iteration) and random controls of the same norm — each "
        "evaluated at several scales, both signs, on unseen advanced-ai-risk A/B questions, scored from the "
        "answer-letter logits at the answer position.",
        "",
        *_setup(cfg),
        "",
        "## Definitions",
        "",
        "```",
        summary.definitions,
        "```",
        "",
    ]
    for label, m in summary.models.items():
        lines += [f"## {label}", "", *_datasets(m), "", "### Vectors", "", *_vectors(m), "", _norm_line(m), ""]
        for name, ds in m.datasets.items():
            b = ds.baseline
            lines += [
                f"### {name}",
                "",
                f"Unsteered: {ds.behavior} {pct(b.behavior, 1)}, mean logit difference {num(b.logit_diff)}, "
                f"letter mass {_f(b.mass, 2)}, n = {b.behavior.n} questions ({_where(ds)}).",
                "",
                *_method_tables(ds),
                *_held_out(ds),
                f"**Best vectors, IN-SAMPLE** (top {k} per method, each at its best scale, chosen and measured "
                f"on the same {ds.n_questions} questions ({_where(ds)}): biased upwards; the held-out table above "
                "is the estimate)",
                "",
                *_best(ds, k),
                "",
                f"**Every vector: {ds.behavior} % by scale** ({_where(ds)}, in-sample)",
                "",
                *_per_vector(ds),
                "",
            ]
        files = plots.get(label, {})
        if files:
            lines += ["### Violin plots of logit differences", ""]
            lines += [f"![{group}]({f})" for group, f in files.items()] + [""]
        lines += _proxy(m)
    lines += [
        "Per-row results: `results.jsonl`. Vectors: `vectors/`. Resolved config: `config.yaml`. "
        "Versions: `manifest.json`.",
        "",
    ]
    return "\n".join(lines)
