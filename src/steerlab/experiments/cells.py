"""Run a list of cells (prompt × condition) as batched passes, judge them, append the rows.

A *cell* is one generation: a prompt, with or without the system prompt, with a steering
vector at some layer and strength (strength 0 = unsteered). Cells of different conditions
share a batch: each row carries its own strength (per-row :class:`~steerlab.interventions.Add`),
so a whole condition grid costs as many passes as there are batches of rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from steerlab.evals.base import Judge
from steerlab.evals.coherence import CoherenceScorer
from steerlab.evals.refusal_markers import RefusalMarkerJudge
from steerlab.experiments.store import RunStore
from steerlab.interventions import Add
from steerlab.models.backend import user
from steerlab.models.hf import LanguageModel
from steerlab.vectors import SteeringVector


@dataclass(frozen=True)
class Cell:
    key: str  # unique id of the cell, used to resume
    model: str
    stage: str  # "select" (validation, layer choice) or "eval" (test)
    condition: str  # base | prompt | steer | prompt+steer
    system: bool
    strength: float
    layer: int | None
    prompt_id: str
    label: str  # harmful | benign
    category: str | None
    style: str | None
    prompt: str


def make_key(*parts: object) -> str:
    return "|".join(str(p) for p in parts)


def run_cells(
    lm: LanguageModel,
    cells: Sequence[Cell],
    vectors: dict[int, SteeringVector],
    store: RunStore,
    *,
    system_prompt: str,
    max_new_tokens: int,
    temperature: float,
    batch_size: int,
    seed: int,
    positions: str = "all",
    llm_judge: Judge | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Generate, judge and score every cell not already in ``store``; append rows batch by batch."""
    done = store.done_keys()
    todo = [c for c in cells if c.key not in done]
    markers = RefusalMarkerJudge()
    coherence = CoherenceScorer(lm, batch_size=batch_size)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        convs = [user(c.prompt, system_prompt if c.system else None) for c in chunk]
        adds = []
        for layer in sorted({c.layer for c in chunk if c.layer is not None and c.strength != 0}):
            strengths = [c.strength if c.layer == layer else 0.0 for c in chunk]
            adds.append(Add(vectors[layer], strength=strengths, layers=layer, positions=positions))
        outputs = lm.generate(convs, max_new_tokens=max_new_tokens, temperature=temperature,
                              seed=seed + start, interventions=adds, batch_size=len(chunk))
        prompts = [c.prompt for c in chunk]
        verdicts = markers.judge(prompts, outputs)
        llm_verdicts = llm_judge.judge(prompts, outputs) if llm_judge is not None else [None] * len(chunk)
        coh = coherence.score(convs, outputs)  # the unsteered model: no intervention attached
        rows = []
        for c, out, v, lv, co in zip(chunk, outputs, verdicts, llm_verdicts, coh):
            row = asdict(c)
            row.update(output=out, verdict_markers=v, verdict_llm=lv, coherence=round(float(co), 6),
                       refused=(lv or v) == "refusal")
            rows.append(row)
        store.append(rows)
        if progress:
            progress(min(start + batch_size, len(todo)), len(todo))
