"""report.md for a refusal study, rendered from its summary and config only."""

from __future__ import annotations

from typing import Any

from steerlab.experiments.studies.refusal.config import RefusalStudyConfig
from steerlab.experiments.studies.refusal.summary import RefusalSummary, reading
from steerlab.report.format import num, pct


def _name(e: Any) -> str:
    return {
        "base": "Base model",
        "prompt": "Prompting only",
        "steer": f"Steering s={e.strength:g}",
        "prompt+steer": f"Prompt + Steer s={e.strength:g}",
        "cast": f"CAST s={e.strength:g}",
    }[e.condition]


def render_report(cfg: RefusalStudyConfig, summary: RefusalSummary) -> str:
    """The Markdown report of a refusal study, from its config and summary (it recomputes nothing)."""
    lines = [f"# Refusal steering study: {cfg.name}", ""]
    lines += [
        "Seeds 000/001: a CAA refusal vector, and a fair comparison of the base model, the safety system "
        "prompt, steering alone at several strengths, the prompt plus steering, and conditional steering "
        "(CAST: steer only the prompts a condition direction flags as harmful). Rates are on the "
        "test split; brackets are 95% intervals (Wilson for rates, bootstrap for coherence); n is the "
        "number of replies per cell.",
        "",
        f"- System prompt: “{cfg.conditions.system_prompt}”",
        f"- Vector: {cfg.extraction.method}, selector `{cfg.extraction.selector}`, site `{cfg.extraction.site}`, "
        f"normalisation `{cfg.extraction.normalization}`"
        + (
            " (strength 0.1 = 10% of the mean activation norm at that layer)"
            if cfg.extraction.normalization == "activation_norm"
            else ""
        ),
        f"- Generation: at most {cfg.generation.max_new_tokens} new tokens (a reply ends at the model's end of turn), "
        f"temperature {cfg.generation.temperature}",
        "",
        "## Definitions",
        "",
        "```",
        summary.definitions,
        "```",
        "",
    ]
    min_coh = summary.min_coherence
    for label, m in summary.models.items():
        sel = m.layer_selection
        lines += [
            f"## {label}",
            "",
            f"### Layer choice (validation split, steering alone at s={sel.selection_strength:g})",
            "",
            "| Layer | Vector norm (raw) | Activation norm | Harmful refusal | False positives | Coherence | Score | Chosen |",
            "|---:|---:|---:|---:|---:|---:|---:|:---:|",
        ]
        for t in sel.layers:
            lines.append(
                f"| {t.layer} | {t.vector_raw_norm:.2f} | {t.activation_norm:.1f} | "
                f"{pct(t.harmful_refusal)} | {pct(t.false_positives)} | {t.coherence:.2f} | "
                f"{t.score:+.2f} | {'✔' if t.chosen else ''} |"
            )
        lines += [
            "",
            f"### Fair comparison (layer {sel.layer})",
            "",
            "| Condition | System Prompt | Steering | Harmful Refusal | False Positives | Coherence | n (harmful / benign) |",
            "|---|:---:|:---:|---|---|---|---:|",
        ]
        for e in m.conditions:
            lines.append(
                f"| {_name(e)} | {'Yes' if e.system else 'No'} | "
                f"{f's={e.strength:g}' if e.strength else 'No'} | {pct(e.harmful_refusal)} | "
                f"{pct(e.false_positives)} | {num(e.coherence)} | "
                f"{e.harmful_refusal.n} / {e.false_positives.n} |"
            )
        steer, both = m.optimal_steer, m.optimal_prompt_steer
        lines += [
            "",
            f"Optimal strength (rule above, min coherence {min_coh}): "
            f"steering alone **{'none qualifies' if steer is None else f's={steer:g}'}**; "
            f"with the system prompt **{'none qualifies' if both is None else f's={both:g}'}**.",
            "",
            f"![rates vs strength]({m.plot})",
            "",
        ]
        if m.cast is not None:
            cs, cc = m.cast, m.cast.condition
            lines += [
                f"### CAST condition (validation split: {cc.n_harmful} harmful + {cc.n_benign} benign prompts)",
                "",
                "| Condition layer | AUC | Balanced accuracy | Threshold | Steer when | Chosen |",
                "|---:|---:|---:|---:|:---:|:---:|",
            ]
            for ct in cc.layers:
                lines.append(
                    f"| {ct.layer} | {ct.auc:.2f} | {ct.accuracy:.2f} | {ct.threshold:.4f} | "
                    f"score {'>' if ct.comparator == 'greater' else '<'} threshold | "
                    f"{'✔' if ct.layer == cc.layer else ''} |"
                )
            acc = "–" if cs.test_accuracy is None else f"{cs.test_accuracy:.2f}"
            lines += [
                "",
                f"Chosen: condition layer {cc.layer}, threshold {cc.threshold:.4f} "
                f"(steer when score {'>' if cc.comparator == 'greater' else '<'} threshold), validation balanced "
                f"accuracy {cc.accuracy:.2f} (in-sample), AUC {cc.auc:.2f}; gated rows steered at s={cs.strength:g}. "
                f"On the test split the gate steered {pct(cs.gated_harmful)} of harmful and "
                f"{pct(cs.gated_benign)} of benign prompts (balanced accuracy {acc}).",
                "",
            ]
        lines += ["**Reading.** " + reading(m.conditions, min_coh, m.cast), ""]
        if m.agreement:
            a = m.agreement
            kappa = "–" if a.get("kappa") is None else f"{a['kappa']:.2f}"
            lines += [f"Judge agreement (markers vs LLM judge): raw {a['raw']:.2f}, Cohen's κ {kappa}, n={a['n']}.", ""]
        base = next(e for e in m.conditions if e.condition == "base")
        if (base.harmful_refusal.value or 0) < 0.5:
            lines += [
                "**Reading.** This model seldom refuses on its own (base harmful refusal "
                f"{pct(base.harmful_refusal)}, n={base.harmful_refusal.n}). "
                "The study therefore shows steering *inducing* refusal, and what that costs: watch "
                "the false-positive rate on benign requests (many of them built to look harmful) and the "
                "coherence column as strength grows.",
                "",
            ]
    lines += [
        "## Across models",
        "",
        "| Model | Base Refusal | Prompting (refusal / FP) | Best Steering | Improvement | False Positives at best "
        "| CAST (refusal / FP) |",
        "|---|:---:|:---:|:---:|:---:|:---:|:---:|",
    ]
    for r in summary.cross_model:
        best = f"{pct(r.best_refusal)} (s={r.best_strength:g})" if r.best_strength is not None else "none qualifies"
        imp = f"{100 * r.improvement:+.0f} pts" if r.improvement is not None else "–"
        lines.append(
            f"| {r.model} | {pct(r.base_refusal)} | {pct(r.prompt_refusal)} / "
            f"{pct(r.prompt_false_positives)} | {best} | {imp} | {pct(r.best_false_positives)} | "
            f"{pct(r.cast_refusal)} / {pct(r.cast_false_positives)} |"
        )
    lines += ["", "Per-response rows: `results.jsonl`. Resolved config: `config.yaml`. Versions: `manifest.json`.", ""]
    return "\n".join(lines)
