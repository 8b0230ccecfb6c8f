"""report.md for a refusal study, rendered from summary.json content only."""

from __future__ import annotations

from typing import Any

from steerlab.experiments import refusal_summary
from steerlab.experiments.refusal import slug


def _pct(est: dict[str, Any] | float | None) -> str:
    if est is None:
        return "–"
    if isinstance(est, dict):
        if est["value"] is None:
            return "–"
        return f"{100 * est['value']:.0f}% [{100 * est['low']:.0f}, {100 * est['high']:.0f}]"
    return f"{100 * est:.0f}%"


def _num(est: dict[str, Any]) -> str:
    if est["value"] is None:
        return "–"
    return f"{est['value']:.2f} [{est['low']:.2f}, {est['high']:.2f}]"


def _name(e: dict[str, Any]) -> str:
    return {"base": "Base model", "prompt": "Prompting only", "steer": f"Steering s={e['strength']:g}",
            "prompt+steer": f"Prompt + Steer s={e['strength']:g}"}[e["condition"]]


def render_report(cfg: Any, summary: dict[str, Any]) -> str:
    lines = [f"# Refusal steering study: {cfg.name}", ""]
    lines += [
        "Seeds 000/001: a CAA refusal vector, and a fair comparison of the base model, the safety system "
        "prompt, steering alone at several strengths, and the prompt plus steering. Rates are on the "
        "test split; brackets are 95% bootstrap intervals; n is the number of replies per cell.",
        "",
        f"- System prompt: “{cfg.conditions.system_prompt}”",
        f"- Vector: {cfg.extraction.method}, selector `{cfg.extraction.selector}`, site `{cfg.extraction.site}`, "
        f"normalisation `{cfg.extraction.normalization}`"
        + (" (strength 0.1 = 10% of the mean activation norm at that layer)"
           if cfg.extraction.normalization == "activation_norm" else ""),
        f"- Generation: {cfg.generation.max_new_tokens} new tokens, temperature {cfg.generation.temperature}",
        "",
        "## Definitions",
        "",
        "```",
        refusal_summary.__doc__.split("Definitions (stated in every report):", 1)[1].strip("\n"),
        "```",
        "",
    ]
    for label, m in summary["models"].items():
        sel = m["layer_selection"]
        lines += [f"## {label}", "", f"### Layer choice (validation split, steering alone at s={sel['selection_strength']:g})", "",
                  "| Layer | Vector norm (raw) | Activation norm | Harmful refusal | False positives | Coherence | Score | Chosen |",
                  "|---:|---:|---:|---:|---:|---:|---:|:---:|"]
        for t in sel["layers"]:
            lines.append(f"| {t['layer']} | {t['vector_raw_norm']:.2f} | {t['activation_norm']:.1f} | "
                         f"{_pct(t['harmful_refusal'])} | {_pct(t['false_positives'])} | {t['coherence']:.2f} | "
                         f"{t['score']:+.2f} | {'✔' if t['chosen'] else ''} |")
        lines += ["", f"### Fair comparison (layer {sel['layer']})", "",
                  "| Condition | System Prompt | Steering | Harmful Refusal | False Positives | Coherence | n (harmful / benign) |",
                  "|---|:---:|:---:|---|---|---|---:|"]
        for e in m["conditions"]:
            lines.append(f"| {_name(e)} | {'Yes' if e['system'] else 'No'} | "
                         f"{'s=%g' % e['strength'] if e['strength'] else 'No'} | {_pct(e['harmful_refusal'])} | "
                         f"{_pct(e['false_positives'])} | {_num(e['coherence'])} | "
                         f"{e['harmful_refusal']['n']} / {e['false_positives']['n']} |")
        best = refusal_summary.optimal_strength(m["conditions"], "steer", cfg.judges.min_coherence)
        best_p = refusal_summary.optimal_strength(m["conditions"], "prompt+steer", cfg.judges.min_coherence)
        lines += ["", f"Optimal strength (rule above, min coherence {cfg.judges.min_coherence}): "
                  f"steering alone **{'s=%g' % best['strength'] if best else 'none qualifies'}**; "
                  f"with the system prompt **{'s=%g' % best_p['strength'] if best_p else 'none qualifies'}**.", "",
                  f"![rates vs strength](rates_vs_strength_{slug(label)}.png)", ""]
        if m.get("agreement"):
            a = m["agreement"]
            lines += [f"Judge agreement (markers vs LLM judge): raw {a['raw']:.2f}, Cohen's κ {a['kappa']:.2f}, n={a['n']}.", ""]
        base = next(e for e in m["conditions"] if e["condition"] == "base")
        if (base["harmful_refusal"]["value"] or 0) < 0.5:
            lines += ["**Reading.** This model seldom refuses on its own (base harmful refusal "
                      f"{_pct(base['harmful_refusal']['value'])}), as expected of a base (not instruction-tuned) "
                      "model. The study therefore shows steering *inducing* refusal, and what that costs: watch "
                      "the false-positive rate on benign requests (many of them built to look harmful) and the "
                      "coherence column as strength grows.", ""]
    lines += ["## Across models", "",
              "| Model | Base Refusal | Prompting (refusal / FP) | Best Steering | Improvement | False Positives at best |",
              "|---|:---:|:---:|:---:|:---:|:---:|"]
    for r in summary["cross_model"]:
        best = f"{_pct(r['best_refusal'])} (s={r['best_strength']:g})" if r["best_strength"] is not None else "none qualifies"
        imp = f"{100 * r['improvement']:+.0f} pts" if r["improvement"] is not None else "–"
        lines.append(f"| {r['model']} | {_pct(r['base_refusal'])} | {_pct(r['prompt_refusal'])} / "
                     f"{_pct(r['prompt_false_positives'])} | {best} | {imp} | {_pct(r['best_false_positives'])} |")
    lines += ["", "Per-response rows: `results.jsonl`. Resolved config: `config.yaml`. Versions: `manifest.json`.", ""]
    return "\n".join(lines)
