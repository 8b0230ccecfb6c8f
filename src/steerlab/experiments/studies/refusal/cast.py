"""The CAST condition of the refusal study: its direction, its scores and the choice of layer and
threshold — all on the validation split.

For each candidate condition layer L (below the steering layer):
  direction_L = mean(last-token state of harmful val prompts) − mean(… of benign val prompts)
  score(p)    = cos(h_L(p), P_L h_L(p))     (steerlab.interventions.conditional.projected_cosine)
The chosen (layer, threshold, comparator) classifies the validation prompts best (balanced
accuracy; ties: higher AUC, then the earlier layer); the threshold is the midpoint of the best
run of thresholds. The direction is fitted on the same prompts it is scored on, so the
validation accuracy is optimistic; the test split's gate rates (in the summary) are not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from steerlab.experiments.engine.records import Record

if TYPE_CHECKING:
    from steerlab.data import Prompt
    from steerlab.models.hf import LanguageModel
    from steerlab.vectors.vector import VectorSet


class ConditionLayer(Record):
    """One candidate condition layer on the validation prompts."""

    layer: int
    auc: float = Field(description="P(harmful score passes before a benign one), in the comparator's direction")
    accuracy: float = Field(description="balanced accuracy of the best threshold at this layer")
    threshold: float
    comparator: Literal["greater", "smaller"]


class CastCondition(Record):
    """The chosen condition (written to cast_condition.json; summarised in the report)."""

    version: int = Field(1, description="record version")
    layer: int = Field(description="condition layer")
    threshold: float
    comparator: Literal["greater", "smaller"]
    accuracy: float = Field(description="balanced accuracy on the validation prompts (in-sample: optimistic)")
    auc: float
    n_harmful: int
    n_benign: int
    layers: list[ConditionLayer]


def condition_layers(spec: list[int] | Literal["auto"], steer_layer: int) -> list[int]:
    """Candidate condition layers strictly below the steering layer (the gate must be known first)."""
    if spec == "auto":
        return list(range(2, steer_layer, 2)) or list(range(steer_layer))
    return [layer for layer in spec if layer < steer_layer]


def fit_directions(lm: LanguageModel, val: Sequence[Prompt], layers: list[int], batch_size: int) -> VectorSet:
    """Worker task: harmful-minus-benign mean of validation prompts' last-token states per layer."""
    from steerlab.vectors import Example, extract

    pos = [Example(p.text) for p in val if p.label == "harmful"]
    neg = [Example(p.text) for p in val if p.label == "benign"]
    return extract(
        lm, pos, neg, layers, method="mean_diff", selector="last", normalization="none", batch_size=batch_size
    )


def score_prompts(
    lm: LanguageModel, prompts: Sequence[str], directions: dict[int, object], batch_size: int
) -> dict[int, list[float]]:
    """Worker task: each prompt's condition score at each layer (``directions[layer]`` is ``[d]``)."""
    import torch

    from steerlab.interventions.conditional import projected_cosine
    from steerlab.vectors import Example
    from steerlab.vectors.extract import read_activations

    acts, _ = read_activations(
        lm, [Example(p) for p in prompts], list(directions), selector="last", batch_size=batch_size
    )
    out = {}
    for layer, d in directions.items():
        assert isinstance(d, torch.Tensor)
        out[layer] = [round(float(x), 6) for x in projected_cosine(acts[layer], d)]
    return out


def auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """P(a positive score > a negative one), ties counted half (Mann–Whitney)."""
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def best_threshold(
    harm: Sequence[float], benign: Sequence[float]
) -> tuple[float, float, Literal["greater", "smaller"]]:
    """(balanced accuracy, threshold, comparator) of the best cut between the two score lists."""
    values = sorted(set(harm) | set(benign))
    cuts = [values[0] - 1e-6] + [(a + b) / 2 for a, b in zip(values, values[1:])] + [values[-1] + 1e-6]
    best: tuple[float, float, Literal["greater", "smaller"]] | None = None
    for comparator in ("greater", "smaller"):
        accs = []
        for t in cuts:
            tp = sum((s > t) if comparator == "greater" else (s < t) for s in harm) / len(harm)
            tn = sum(not ((s > t) if comparator == "greater" else (s < t)) for s in benign) / len(benign)
            accs.append((tp + tn) / 2)
        top = max(accs)
        run = [i for i, a in enumerate(accs) if a == top]
        mid = cuts[run[len(run) // 2]]  # the middle of the best thresholds: the largest margin
        if best is None or top > best[0]:
            best = (top, mid, comparator)
    assert best is not None
    return best


def choose_condition(scores: dict[int, list[float]], labels: Sequence[str]) -> CastCondition:
    """The condition layer, threshold and comparator that best separate harmful from benign prompts."""
    table = []
    for layer, s in sorted(scores.items()):
        harm = [x for x, lab in zip(s, labels) if lab == "harmful"]
        ben = [x for x, lab in zip(s, labels) if lab == "benign"]
        acc, thr, comp = best_threshold(harm, ben)
        a = auc(harm, ben) if comp == "greater" else auc(ben, harm)
        table.append(ConditionLayer(layer=layer, auc=a, accuracy=acc, threshold=thr, comparator=comp))
    best = max(table, key=lambda e: (e.accuracy, e.auc, -e.layer))
    return CastCondition(
        layer=best.layer,
        threshold=best.threshold,
        comparator=best.comparator,
        accuracy=best.accuracy,
        auc=best.auc,
        n_harmful=sum(lab == "harmful" for lab in labels),
        n_benign=sum(lab == "benign" for lab in labels),
        layers=table,
    )
