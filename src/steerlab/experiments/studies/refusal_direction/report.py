"""report.md for a refusal-direction study, rendered from its summary and config only."""

from __future__ import annotations

from typing import Any

from steerlab._io import slug
from steerlab.report.format import markdown_table, num, pct

_NAMES = {
    "baseline": "Baseline (unsteered)",
    "ablate": "Directional ablation (hooks)",
    "add": "Activation addition",
    "orthogonalized": "Orthogonalised weights",
    "induce": "Activation addition on harmless prompts",
}


def _condition_name(e: Any, add_coefficient: float, induce_coefficient: float = 1.0) -> str:
    name = _NAMES[e.condition]
    if e.condition == "induce":
        return f"{name} ×{induce_coefficient:+g} (over-refusal column = refusal induced)"
    return f"{name} ×{add_coefficient:g}" if e.condition == "add" else name


def _quote(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|") or "(empty)"


def _relaxed_reading(m: Any, sel: Any) -> str:
    """Why the selection filters were relaxed, read from the candidates' own scores (and, for the induce
    filter, what generation then showed)."""
    kl = (
        f"; the KL threshold was raised from {sel.kl_threshold:g} to {sel.kl_threshold_used:.3g}"
        if "kl" in sel.relaxed
        else ""
    )
    filters = (
        f"the {sel.relaxed[0]} filter was" if len(sel.relaxed) == 1 else f"the {' and '.join(sel.relaxed)} filters were"
    )
    text = f"**No candidate passed every filter**: {filters} relaxed{kl}. "
    allowed = [c for c in m.candidates if not {"late_layer", "degenerate"} & set(c.filtered)]
    within_kl = [c for c in allowed if "kl" not in c.filtered]
    if within_kl:
        top = max(within_kl, key=lambda c: c.induce)
        text += (
            f"Of the {len(within_kl)} candidates within KL {sel.kl_threshold:g} (late layers and degenerate "
            f"vectors aside), none brings the harmless prompts' refusal score up to {sel.induce_threshold:g} "
            f"when added: the highest is {top.name}'s {top.induce:+.2f} (n={top.n}), from "
            f"{num(m.baseline.harmless)} unsteered (n={m.baseline.harmless.n})."
        )
    elif allowed:
        low = min(allowed, key=lambda c: c.kl)
        text += (
            f"Every one of the {len(allowed)} candidates outside the pruned layers costs more than KL "
            f"{sel.kl_threshold:g} when ablated (the smallest is {low.name}'s {low.kl:.3f}, n={low.n}); compare "
            "the candidates with the random controls below before reading anything into the choice."
        )
    induced = next((e for e in m.conditions if e.condition == "induce"), None)
    base = next((e for e in m.conditions if e.condition == "baseline"), None)
    if "induce" in sel.relaxed and induced is not None and induced.over_refusal.n:
        text += (
            " The induce score is a next-token score at the prompt's end; in generation, adding the chosen "
            f"direction made the model refuse {pct(induced.over_refusal)} of harmless test prompts "
            f"(n={induced.over_refusal.n})"
            + (f", against {pct(base.over_refusal)} unsteered" if base is not None and base.over_refusal.n else "")
            + "."
        )
    return text


def render_report(cfg: Any, summary: Any, definitions: str) -> str:
    """The Markdown report (a ``RefusalDirectionConfig`` and its ``RefusalDirectionSummary``)."""
    d, s, g = summary.data, cfg.scoring, cfg.generation
    lines = [
        f"# Refusal direction: {cfg.name}",
        "",
        'Seed 003 (Arditi et al. 2024, "Refusal in language models is mediated by a single direction"): '
        "difference-of-means candidates at every post-instruction position × layer, scored on a validation "
        "split, one chosen, then ablated, subtracted and baked into the weights, and evaluated on a "
        "held-out test split. Brackets are 95% intervals; n is beside every rate.",
        "",
        f"- Splits (prompts per set): train {d.train}, val {d.val}, test {d.test}, over-refusal set "
        f"{d.overrefusal}; disjoint by normalised text"
        + (f" (overlapping prompts dropped from held-out sources: {d.dropped_overlaps})" if d.dropped_overlaps else "")
        + (
            f"; prompts over {cfg.data.max_chars} characters dropped before splitting: {d.dropped_long}"
            if d.dropped_long
            else ""
        ),
        f"- Candidates read at `{s.site}`; filters: last {s.prune_layer_fraction:.0%} of layers pruned, "
        f"KL > {s.kl_threshold:g} dropped, induce < {s.induce_threshold:g} dropped",
        f"- Generation: at most {g.max_new_tokens} new tokens, temperature {g.temperature:g} (the published "
        "code uses 512; short replies can fool marker judges, so read refusal rates with the examples below)",
        "",
        "## Definitions",
        "",
        "```",
        definitions,
        "```",
        "",
    ]
    for label, m in summary.models.items():
        lines += _model_section(label, m, cfg)
    lines += [
        "Every score behind every choice: `results.jsonl` (one row per candidate × prompt × metric, per reply, "
        "per capability row) and `summary.json`. Candidates: `vectors/`; chosen direction: "
        "`direction_<model>.safetensors` (steerlab vector format). Config: `config.yaml`; versions: "
        "`manifest.json`.",
        "",
    ]
    return "\n".join(lines)


def _model_section(label: str, m: Any, cfg: Any) -> list[str]:
    t, sel, iv, ev = m.refusal_tokens, m.selection, cfg.interventions, cfg.evaluation
    tag = slug(label)
    lines = [f"## {label}", "", "### Refusal tokens", ""]
    toks = ", ".join(f"`{x!r}` (id {i}, {c} refusals)" for x, i, c in zip(t.texts, t.ids, t.counts))
    if t.source == "model_refusals":
        lines.append(
            f"R = {toks}: first tokens of this model's own refusals ({t.n_refusals} of {t.n_replies} greedy "
            "replies to train harmful prompts were refusals by the marker judge)."
        )
    elif t.source == "configured_openers":
        lines.append(f"R = {toks}: first tokens of the configured openers (scoring.refusal_openers).")
    else:
        lines.append(
            f"R = {toks}: the model refused {t.n_refusals} of {t.n_replies} train harmful prompts (too few "
            "to learn from), so R is the first token of standard refusal openers as this tokenizer writes them."
        )
    share = f"harmful {pct(t.harmful_share)} (n={t.n_replies})" + (
        f", harmless {pct(t.harmless_share)}" if t.harmless_share is not None else ""
    )
    lines += [
        f"Share of greedy train replies opening with a token of R: {share}."
        if t.n_replies
        else "No train replies were generated to check R against (the tokens were configured).",
        "",
        f"Baseline refusal score (validation): harmful {num(m.baseline.harmful)} (n={m.baseline.harmful.n}), "
        f"harmless {num(m.baseline.harmless)} (n={m.baseline.harmless.n}). (A score of 0 means P(R) = 1/2; "
        "if harmful and harmless prompts score alike, R does not single out refusals on this model.)",
        "",
    ]

    pf = m.prompt_filter
    if pf is not None:
        kept = ", ".join(f"{k} {pf.kept[k]}/{pf.before[k]}" for k in pf.before)
        lines += [
            "### Prompt filter",
            "",
            "As the reference's `filter_data`: harmful train/val prompts kept only if the unsteered refusal "
            f"score is > 0, harmless ones only if it is < 0. Kept: {kept}.",
            "",
        ]
    else:
        lines += ["Prompt filter: off (scoring.filter_prompts: false); every train/val prompt was used.", ""]
    lines += [
        "### Candidate selection",
        "",
        f"{len(m.candidates)} candidates ({m.n_post_instruction} post-instruction positions × "
        f"{len(m.candidates) // max(1, m.n_post_instruction)} layers), fitted on {m.n_train_prompts} train prompts "
        f"({m.tail_matches} of which end in exactly the template's own tail tokens). "
        f"Chosen: **{sel.chosen}** (position {sel.position}, layer {sel.layer}; ‖r‖ = {m.direction_norm:.3g}) — "
        f"{sel.rule}; {sel.n_eligible} candidates eligible.",
        "",
    ]
    if sel.dropped_nonfinite:
        lines += [
            f"{len(sel.dropped_nonfinite)} candidates had a NaN or infinite score and were dropped, as the "
            f"reference does: {', '.join(sel.dropped_nonfinite)}.",
            "",
        ]
    if sel.relaxed:
        lines += [_relaxed_reading(m, sel), ""]
    lines += [f"![candidate heatmaps](candidates_{tag}.png)", ""]
    best = sorted(m.candidates, key=lambda c: (not c.chosen, not c.eligible, c.bypass))[:10]
    lines += markdown_table(
        ["candidate", "layer", "position", "bypass", "induce", "KL", "‖r‖", "filtered", "eligible", "chosen"],
        [
            [
                c.name,
                c.layer,
                c.position,
                f"{c.bypass:+.2f}",
                f"{c.induce:+.2f}",
                f"{c.kl:.3f}",
                f"{c.norm:.3g}",
                ", ".join(c.filtered) or "–",
                "yes" if c.eligible else "no",
                "★" if c.chosen else "",
            ]
            for c in best
        ],
        ["l", "r", "r", "r", "r", "r", "r", "l", "c", "c"],
    )
    lines += [
        "",
        "(The chosen candidate, then the best by bypass among the eligible ones (the filters as applied, after "
        "any relaxation), then the rest; every candidate's scores are in `summary.json`.)",
        "",
    ]
    if m.controls:
        lines += [
            f"Random-direction controls (isotropic, ‖r‖ = {m.controls[0].norm:.3g}, layer {m.controls[0].layer}; "
            "scored exactly like the candidates): "
            + "; ".join(f"bypass {c.bypass:+.2f}, induce {c.induce:+.2f}, KL {c.kl:.3f}" for c in m.controls)
            + ". A candidate is only interesting where it beats these.",
            "",
        ]

    lines += [
        "### Interventions on the test split",
        "",
        f"Judge: {m.judge}. Guard: {m.guard}"
        + (
            " — **offline proxy**: no guard model configured, so 'unsafe' = not a refusal and at least "
            f"{ev.min_words} words; this is a non-refusal rate, not a harm judgement."
            if m.guard.startswith("proxy")
            else f" (replies under {ev.min_words} words never count as unsafe)."
        ),
        "",
    ]
    header = ["intervention", "refusal (harmful)", "unsafe (harmful)", "over-refusal (harmless)"]
    look = any(e.over_refusal_lookalike is not None for e in m.conditions)
    header += ["over-refusal (look-alike)"] if look else []
    header += ["KL (nats/token)", "CE (nats/token)", "words/reply"]
    rows = []
    for e in m.conditions:
        row = [
            _condition_name(e, m.add_coefficient, m.induce_coefficient),
            f"{pct(e.refusal)} n={e.refusal.n}",
            f"{pct(e.unsafe)} n={e.unsafe.n}",
            f"{pct(e.over_refusal)} n={e.over_refusal.n}",
        ]
        if look:
            o = e.over_refusal_lookalike
            row.append(f"{pct(o)} n={o.n}" if o is not None else "–")
        row += [num(e.kl, 3), num(e.ce, 2), f"{e.mean_words_harmful:.0f}" if e.mean_words_harmful is not None else "–"]
        rows.append(row)
    lines += markdown_table(header, rows, ["l"] + ["r"] * (len(header) - 1))
    llm = [e for e in m.conditions if e.refusal_llm is not None]
    if llm:
        lines += [
            "",
            "Refusal (harmful) by judge: "
            + "; ".join(f"{e.condition}: markers {pct(e.refusal_markers)}, LLM {pct(e.refusal_llm)}" for e in llm)
            + ".",
        ]
    cats = {e.condition: e.unsafe_categories for e in m.conditions if e.unsafe_categories}
    if cats:
        lines += [
            "",
            "Guard categories of unsafe replies: "
            + "; ".join(f"{c}: " + ", ".join(f"{k}×{v}" for k, v in cs.items()) for c, cs in cats.items())
            + ".",
        ]
    unparsed = sum(e.guard_unparsed for e in m.conditions)
    if unparsed:
        lines += ["", f"{unparsed} guard answers could not be parsed (counted as not unsafe)."]
    lines += ["", f"![before and after](before_after_{tag}.png)", ""]

    o = m.orthogonalization
    if o is not None:
        lines += [
            "### Weight orthogonalisation versus hooks",
            "",
            f"On {o.n_prompts} test prompts (last-position logits, float32): orthogonalised weights vs "
            f"the equivalent hook ablation: max |Δlogit| = {o.max_abs_logit_diff_vs_equivalent_hooks:.2e}; "
            f"vs the standard `Ablate` hooks: {o.max_abs_logit_diff_vs_ablate:.2e} (mean next-token KL "
            f"{o.mean_kl_vs_ablate:.2e} nats); the largest |logit| is {o.max_abs_logit:.3g}. Largest |h·r̂|/|h| left in any layer's residual stream of the "
            f"edited model: {o.max_residual_projection:.1e}. LM head untied from the embedding: "
            f"{'yes' if o.untied else 'no (not tied)'}.",
            "",
            f"Equivalent to: {o.equivalent_to}.",
            "",
        ]
        if o.norm_after_write:
            lines += [
                "This model puts a norm after each attention / MLP write (Gemma 2/3). Its weights were "
                "orthogonalised against the gain-weighted direction of each following norm, which makes "
                "every write orthogonal to r exactly but changes the norm's input, so the result equals the "
                "pre-norm hook ablation above, not the post-norm `Ablate` (see docs/refusal_direction.md).",
                "",
            ]
        if iv.norm_preserving:
            lines += [
                "The *orthogonalized* condition used the norm-preserving variant, which is not equivalent to "
                "any hook ablation; the check above is of the exact variant.",
                "",
            ]

    if m.examples:
        lines += ["### Example replies (harmful test prompts)", ""]
        lines += markdown_table(
            ["prompt", "intervention", "reply", "refused", "guard"],
            [
                [_quote(e.prompt, 60), e.condition, _quote(e.output), "yes" if e.refused else "no", e.guard or "–"]
                for e in m.examples
            ],
        )
        lines.append("")
    base = next((e for e in m.conditions if e.condition == "baseline"), None)
    if base is not None and (base.refusal.value or 0) < 0.2:
        lines += [
            "**Reading.** The unsteered model seldom refuses here (baseline refusal "
            f"{pct(base.refusal)} of harmful test prompts, n={base.refusal.n}): there is little refusal for "
            "ablation to remove. Compare the over-refusal and KL columns to see what each intervention costs.",
            "",
        ]
    return lines
