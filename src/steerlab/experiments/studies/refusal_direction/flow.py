"""Seed 003 as one experiment kind: the refusal direction (Arditi et al. 2024) on any model.

The flow, top to bottom (:meth:`RefusalDirection.flow`), for every model in the config:
  1. tokens     — the model's refusal-opening tokens, from its own greedy replies to the train
                  harmful prompts, or fixed openers (refusal_tokens_<model>.json)
  2. filter     — the reference's filter_data: harmful train/val prompts kept if the unsteered
                  refusal score is > 0, harmless ones if it is < 0 (scoring.filter_prompts)
  3. candidates — difference of means (harmful − harmless, train split) at every post-instruction
                  position × layer, one capture pass per prompt set (vectors/<model>-candidates)
  4. score      — every candidate on the validation split, many candidates per batch (per-row
                  directions): bypass (ablated, harmful), induce (added, harmless), KL (ablated,
                  harmless); plus the unsteered baseline. Filters, then the lowest bypass wins;
                  the chosen raw vector is saved as direction_<model>.safetensors
  5. generate   — baseline / ablate / add (negative coefficient) / orthogonalised weights on the
                  test split (and the over-refusal set), and induce (+1× on harmless test prompts),
                  judged by markers (+ LLM judge) and a guard
  6. capability — KL and cross-entropy on harmless test prompts + the unsteered model's replies
  7. check      — the orthogonalised weights against hook ablation on a few prompts; optionally
                  the orthogonalised model is saved as a plain Hugging Face directory
Every intermediate score is a row of results.jsonl; finished cells are skipped on resume.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from steerlab._io import atomic_write_text, slug
from steerlab.errors import InputError
from steerlab.experiments.engine.config import ModelSpec
from steerlab.experiments.engine.records import make_key
from steerlab.experiments.engine.registry import ExperimentKind, register_kind
from steerlab.experiments.engine.run import Run
from steerlab.experiments.studies.refusal_direction.config import (
    InterventionConfig,
    RefusalDirectionConfig,
)
from steerlab.experiments.studies.refusal_direction.data import DirectionData, load_direction_data
from steerlab.experiments.studies.refusal_direction.records import (
    DirectionCell,
    PromptSet,
)
from steerlab.experiments.studies.refusal_direction.selection import (
    baseline_scores,
    candidate_scores,
    condition_table,
    examples,
    filter_prompts,
    select_candidate,
)
from steerlab.experiments.studies.refusal_direction.stages import CAPABILITY, GENERATE, SCORE, guard_name
from steerlab.experiments.studies.refusal_direction.summary import (
    DataCounts,
    ModelResult,
    OrthogonalizationCheck,
    RefusalDirectionSummary,
    RefusalTokensRecord,
    ReloadCheck,
)
from steerlab.experiments.studies.refusal_direction.tasks import (
    check_orthogonalization,
    find_tokens,
    fit_candidates,
    random_controls,
    reload_replies,
    save_direction,
    save_model,
)
from steerlab.interventions.spec import NO_INTERVENTION, InterventionSpec
from steerlab.vectors.vector import SteeringVector


@register_kind
class RefusalDirection(ExperimentKind[RefusalDirectionConfig, RefusalDirectionSummary]):
    """Seed 003 (see the module docstring)."""

    name = "refusal_direction"
    Config = RefusalDirectionConfig
    Summary = RefusalDirectionSummary
    stages = (SCORE, GENERATE, CAPABILITY)

    def flow(self, cfg: RefusalDirectionConfig, run: Run) -> RefusalDirectionSummary:
        data = load_direction_data(cfg.data, cfg.seed)
        models = {spec.name: self.study_model(cfg, run, spec, data) for spec in cfg.models}
        counts = DataCounts(
            train={k: len(v) for k, v in data.train.items()},
            val={k: len(v) for k, v in data.val.items()},
            test={k: len(v) for k, v in data.test.items()},
            overrefusal=len(data.overrefusal),
            dropped_overlaps=data.dropped_overlaps,
            dropped_long=data.dropped_long,
        )
        return RefusalDirectionSummary(name=cfg.name, data=counts, models=models)

    def study_model(self, cfg: RefusalDirectionConfig, run: Run, spec: ModelSpec, data: DirectionData) -> ModelResult:
        s, iv, ev = cfg.scoring, cfg.interventions, cfg.evaluation
        tag, model = slug(spec.name), spec.name
        info = run.model_info(spec)
        train = {k: [p.text for p in v] for k, v in data.train.items()}

        def clock(label: str) -> AbstractContextManager[None]:
            return run.timer(label, file=f"timings_{tag}.json")

        # 1. the model's refusal tokens (from the train harmful prompts, before any filter)
        with clock("refusal_tokens"):
            tokens = run.json_once(
                f"refusal_tokens_{tag}.json",
                RefusalTokensRecord,
                lambda: run.task(spec, find_tokens, train["harmful"], s, cfg.generation.batch_size),
            )
        if not tokens.ids:
            raise InputError(f"{model}: no refusal token could be found or formed; set scoring.refusal_openers")
        # 2. the reference's prompt filter: unsteered refusal scores of every train/val prompt
        prompt_filter = None
        if s.filter_prompts:
            with clock("prompt_filter"):
                cells = [
                    self._score_cell(run, model, name, p, "baseline", None, NO_INTERVENTION, tokens.ids, split)
                    for split, sets in (("train", data.train), ("val", data.val))
                    for name, prompts in sets.items()
                    for p in prompts
                ]
                base_rows = run.cells(
                    SCORE, cells, batch_size=s.batch_size, desc=f"prompt filter: {len(cells)} baseline scores"
                )
            data, prompt_filter = filter_prompts(
                data, {(r.split, r.prompt_set, r.prompt_id): r.refusal_score for r in base_rows}
            )
            train = {k: [p.text for p in v] for k, v in data.train.items()}
        # 3. candidates: one capture pass per (filtered) train prompt set, every position × layer
        with clock("candidates"):
            cands = run.vectors(
                f"{tag}-candidates",
                spec,
                fit_candidates,
                train["harmful"],
                train["harmless"],
                s.layers,
                s.site,
                s.batch_size,
            )
        controls = random_controls(cands, s.n_random, cfg.seed)
        # 4. score every candidate (and the random controls) on the validation split, many per batch
        with clock("score"):
            cells = self.score_cells(run, model, data, list(cands.values()) + controls, tokens.ids)
            rows = run.cells(
                SCORE,
                cells,
                vectors={**cands, **{v.name: v for v in controls}},
                batch_size=s.batch_size,
                desc=f"score {len(cands)} candidates + {len(controls)} controls ({len(cells)} rows)",
            )
        norms = {v.name: (int(v.meta.extra["position"]), v.layer, v.meta.raw_norm) for v in cands.values()}
        nonfinite: list[str] = []
        finite = candidate_scores(rows, norms, nonfinite)
        scores, selection = select_candidate(
            finite,
            info.n_layers,
            prune_layer_fraction=s.prune_layer_fraction,
            kl_threshold=s.kl_threshold,
            induce_threshold=s.induce_threshold,
            dropped_nonfinite=nonfinite,
        )
        control_scores = candidate_scores(
            rows, {v.name: (int(v.meta.extra["position"]), v.layer, v.norm) for v in controls}
        )
        direction = save_direction(run.root / f"direction_{tag}.safetensors", cands[selection.chosen])
        table = {"direction": direction}

        # 5. generate with every intervention on the test split (induce: harmless prompts only)
        sets: list[tuple[PromptSet, list]] = [
            ("harmful", data.test["harmful"]),
            ("harmless", data.test["harmless"]),
            ("overrefusal", data.overrefusal),
        ]
        cells = [
            self.generate_cell(run, model, cond, name, p, self._coefficient(cond, iv))
            for cond in iv.conditions
            for name, prompts in sets
            if cond != "induce" or name == "harmless"
            for p in prompts
        ]
        with clock("generate"):
            gen = run.cells(GENERATE, cells, vectors=table, desc=f"generate {len(cells)} replies")

        # 6. capability cost on harmless text: the unsteered model's own replies, teacher-forced
        refs = {r.prompt_id: r.output or "" for r in gen if r.condition == "baseline" and r.prompt_set == "harmless"}
        if not refs:  # baseline not among the conditions: generate the references first
            ref_cells = [self.generate_cell(run, model, "baseline", "harmless", p, 0.0) for p in data.test["harmless"]]
            refs = {
                r.prompt_id: r.output or ""
                for r in run.cells(GENERATE, ref_cells, vectors=table, desc="reference replies")
            }
        cells = [
            self.capability_cell(run, model, cond, p, refs[p.id], self._coefficient(cond, iv))
            for cond in iv.conditions
            for p in data.test["harmless"]
        ]
        with clock("capability"):
            cap = run.cells(CAPABILITY, cells, vectors=table, desc=f"capability {len(cells)} rows")

        # 7. weights vs hooks on this model, and the optional saved model
        check = None
        if "orthogonalized" in iv.conditions or iv.save_model:
            prompts = [p.text for p in data.test["harmful"][: iv.check_prompts]]
            with clock("check"):
                check = run.json_once(
                    f"orthogonalization_{tag}.json",
                    OrthogonalizationCheck,
                    lambda: run.task(spec, check_orthogonalization, direction, prompts),
                )
        reload = None
        if iv.save_model:
            saved = run.root / f"orthogonalized_{tag}"
            with clock("save_model"):
                save_model(saved, spec, direction, iv.norm_preserving)
            if iv.reload_check and "orthogonalized" in iv.conditions:
                with clock("reload_check"):
                    reload = run.json_once(
                        f"reload_{tag}.json",
                        ReloadCheck,
                        lambda: self.reload_check(run, spec, saved, data, gen, cfg),
                    )

        return ModelResult(
            n_layers=info.n_layers,
            n_post_instruction=len({c.meta.extra["position"] for c in cands.values()}),
            tail_matches=int(next(iter(cands.values())).meta.extra["tail_matches"]),
            n_train_prompts=sum(len(v) for v in train.values()),
            refusal_tokens=tokens,
            prompt_filter=prompt_filter,
            baseline=baseline_scores(rows, ev.bootstrap_resamples, cfg.seed),
            candidates=scores,
            controls=control_scores,
            selection=selection,
            direction_norm=direction.norm,
            add_coefficient=iv.add_coefficient,
            induce_coefficient=iv.induce_coefficient,
            conditions=condition_table(gen, cap, ev.bootstrap_resamples, cfg.seed),
            orthogonalization=check,
            reload=reload,
            examples=examples(gen, ev.n_examples),
            guard=guard_name(cfg),
            judge=f"llm_judge({ev.llm_judge_model})" if ev.llm_judge_model else "refusal markers",
        )

    @staticmethod
    def reload_check(
        run: Run, spec: ModelSpec, saved: Path, data: DirectionData, gen: list, cfg: RefusalDirectionConfig
    ) -> ReloadCheck:
        """The saved model, reloaded by plain transformers in a fresh process, on the harmful test split."""
        from steerlab.evals.refusal_markers import RefusalMarkerJudge
        from steerlab.stats.estimates import rate

        prompts = data.test["harmful"]
        replies, dtype = run.task(
            spec,
            reload_replies,
            saved,
            [p.text for p in prompts],
            cfg.generation.max_new_tokens,
            cfg.generation.batch_size,
        )
        verdicts = RefusalMarkerJudge().judge([p.text for p in prompts], replies)
        by = {(r.condition, r.prompt_id): r for r in gen if r.prompt_set == "harmful"}
        orth = [by[("orthogonalized", p.id)] for p in prompts]
        abl = [by[("ablate", p.id)] for p in prompts if ("ablate", p.id) in by]
        return ReloadCheck(
            n_prompts=len(prompts),
            dtype=dtype,
            refusal=rate([v == "refusal" for v in verdicts]),
            refusal_orthogonalized=rate([r.verdict_markers == "refusal" for r in orth]),
            refusal_ablate=rate([r.verdict_markers == "refusal" for r in abl]) if abl else None,
            same_text=sum(a == (r.output or "") for a, r in zip(replies, orth)),
        )

    # ---- cells ---------------------------------------------------------------------------
    def score_cells(
        self, run: Run, model: str, data: DirectionData, cands: list[SteeringVector], tokens: list[int]
    ) -> list[DirectionCell]:
        """Baseline rows, then per validation prompt every candidate's bypass / induce / KL row
        (prompt-major, so a batch shares few prompts and the KL rows' unsteered passes are few)."""
        out = []
        for prompt_set in ("harmful", "harmless"):
            for p in data.val[prompt_set]:
                out.append(self._score_cell(run, model, prompt_set, p, "baseline", None, NO_INTERVENTION, tokens))
        for prompt_set, metrics in (("harmful", ("bypass",)), ("harmless", ("induce", "kl"))):
            for p in data.val[prompt_set]:
                for metric in metrics:
                    for v in cands:
                        spec = (
                            InterventionSpec(kind="add", vector=v.name, strength=1.0)
                            if metric == "induce"
                            else InterventionSpec(kind="ablate", vector=v.name)
                        )
                        out.append(self._score_cell(run, model, prompt_set, p, metric, v.name, spec, tokens))
        return out

    @staticmethod
    def _score_cell(
        run: Run,
        model: str,
        prompt_set: str,
        p: object,
        metric: str,
        cand: str | None,
        spec: InterventionSpec,
        tokens: list[int],
        split: str = "val",
    ) -> DirectionCell:
        key = make_key(model, "score", metric, cand or "-", p.id)  # type: ignore[attr-defined]
        return DirectionCell(
            key=key,
            model=model,
            seed=run.seed(key),
            intervention=spec,
            stage="score",
            prompt_id=p.id,
            prompt_set=prompt_set,
            split=split,  # type: ignore[arg-type]
            prompt=p.text,  # type: ignore[attr-defined,arg-type]
            metric=metric,
            candidate=cand,
            refusal_tokens=list(tokens),
        )  # type: ignore[arg-type]

    @staticmethod
    def _coefficient(condition: str, iv: InterventionConfig) -> float:
        return iv.induce_coefficient if condition == "induce" else iv.add_coefficient

    @staticmethod
    def _spec(condition: str, add_coefficient: float) -> InterventionSpec:
        """``add_coefficient``: the multiple of the direction for add / induce (see ``_coefficient``)."""
        if condition == "ablate":
            return InterventionSpec(kind="ablate", vector="direction")
        if condition in ("add", "induce"):
            return InterventionSpec(kind="add", vector="direction", strength=add_coefficient)
        return NO_INTERVENTION  # baseline, and orthogonalized (the edit is in the weights)

    def generate_cell(
        self, run: Run, model: str, condition: str, prompt_set: PromptSet, p: object, add_coefficient: float
    ) -> DirectionCell:
        key = make_key(model, "generate", condition, prompt_set, p.id)  # type: ignore[attr-defined]
        return DirectionCell(
            key=key,
            model=model,
            seed=run.seed(key),
            intervention=self._spec(condition, add_coefficient),
            stage="generate",
            prompt_id=p.id,
            prompt_set=prompt_set,
            split="test",  # type: ignore[attr-defined]
            prompt=p.text,
            condition=condition,
        )  # type: ignore[attr-defined,arg-type]

    def capability_cell(
        self, run: Run, model: str, condition: str, p: object, reference: str, add_coefficient: float
    ) -> DirectionCell:
        key = make_key(model, "capability", condition, p.id)  # type: ignore[attr-defined]
        return DirectionCell(
            key=key,
            model=model,
            seed=run.seed(key),
            intervention=self._spec(condition, add_coefficient),
            stage="capability",
            prompt_id=p.id,
            prompt_set="harmless",
            split="test",  # type: ignore[attr-defined]
            prompt=p.text,
            condition=condition,
            reference=reference,
        )  # type: ignore[attr-defined,arg-type]

    def report(self, cfg: RefusalDirectionConfig, summary: RefusalDirectionSummary, out_dir: Path) -> Path:
        from steerlab.experiments.studies.refusal_direction.plots import plot_before_after, plot_candidate_heatmaps
        from steerlab.experiments.studies.refusal_direction.report import render_report
        from steerlab.experiments.studies.refusal_direction.summary import DEFINITIONS

        for label, m in summary.models.items():
            plot_candidate_heatmaps(
                m.candidates, m.selection, m.n_layers, out_dir / f"candidates_{slug(label)}.png", title=label
            )
            plot_before_after(m.conditions, out_dir / f"before_after_{slug(label)}.png", title=label)
        path = out_dir / "report.md"
        atomic_write_text(path, render_report(cfg, summary, DEFINITIONS))
        return path
