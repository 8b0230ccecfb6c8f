"""Summary records and number helpers shared by the prefs kinds (computed from rows only)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from steerlab.experiments.engine.records import Record
from steerlab.prefs.rating_stats import condition_reliability, distribution_scale_use
from steerlab.stats.estimates import Estimate, mean, rate

__all__ = [
    "ConditionEntry",
    "Estimate",
    "RefusalGroup",
    "condition_entry",
    "fin",
    "fins",
    "mean",
    "per_completion",
    "refusal_group",
]


def fin(x: Any) -> float | None:
    """A finite float, or None (summaries refuse NaN)."""
    if x is None:
        return None
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


def fins(xs: Sequence[Any]) -> list[float | None]:
    """:func:`fin` of each."""
    return [fin(x) for x in xs]


class ConditionEntry(Record):
    """Reliability and scale use of one (rater, template) condition, sampled and one-pass."""

    rater: str
    template: str
    label: str = Field(description="what the condition is called in tables and plots")
    n_items: int = Field(description="items with a sampled rating")
    n_answers: int = Field(description="sampled replies")
    n_parsed: int = Field(description="replies read as a rating on the declared scale")
    unparseable: dict[str, int] = Field(description="unparseable replies by reason")
    unparseable_examples: list[str] = Field(description="up to three unparseable replies")
    mean: float | None = Field(description="mean parsed rating")
    seed_r: float | None = Field(description="mean cross-seed Pearson r")
    seed_r_std: float | None = Field(description="std of r over seed pairs")
    seed_pairs: int
    icc_a1: float | None = Field(description="ICC(A,1): items as targets, seeds as raters")
    icc_a1_ci: list[float | None] = Field([None, None], description="95% interval of ICC(A,1) (McGraw & Wong)")
    icc_1: float | None = Field(description="ICC(1,1)")
    kl: float | None = Field(description="KL from uniform over the declared scale (sampled ratings)")
    kl_normalized: float | None
    discrimination: float | None = Field(description="share of items with a non-modal rating (d)")
    informative_r: float | None = Field(description="cross-seed r over those items")
    distribution: list[float | None] = Field(description="share of sampled ratings at each declared value")
    icc_n: int = Field(0, description="items the ICC used (rated by every seed)")
    discrimination_n: int = Field(0, description="items with a parsed rating (d's denominator)")
    informative_n: int = Field(0, description="items with a non-modal rating (the informative r's items)")
    values: list[float] = Field(description="the declared values")
    dist_n: int = Field(0, description="items with an answer distribution (one pass)")
    dist_expected: float | None = Field(None, description="mean expected rating")
    dist_expected_sd: float | None = Field(None, description="std of the expected rating across items")
    dist_entropy: float | None = Field(None, description="mean entropy of the answer distribution (nats)")
    dist_scale_mass: float | None = Field(None, description="mean P(an answer on the scale)")
    dist_kl: float | None = Field(None, description="KL(mean answer distribution ‖ uniform)")
    dist_kl_normalized: float | None = None
    dist_mean: list[float | None] = Field([], description="mean answer distribution over the declared values")


def condition_entry(rater: str, template: Any, sampled: Any, dist: Any, label: str | None = None) -> ConditionEntry:
    """A :class:`ConditionEntry` from the sampled and the ``dist`` rows (frames) of one condition.

    Args:
        rater: The rating agent.
        template: The :class:`~steerlab.prefs.templates.RatingTemplate`.
        sampled: Long frame of sampled ratings (may be empty).
        dist: Frame of ``dist`` rows with ``probs``, ``expected``, ``entropy``, ``scale_mass``.
        label: Table label (default ``template`` or ``rater/template``).
    """
    scale = template.scale
    fields: dict[str, Any] = {
        "rater": rater,
        "template": template.name,
        "label": label or template.name,
        "values": list(scale.values),
    }
    if len(sampled):
        rel = condition_reliability(sampled, scale)
        bad = sampled[sampled["value"].isna()]
        fields.update(
            n_items=rel.n_items,
            n_answers=rel.n_answers,
            n_parsed=rel.n_parsed,
            unparseable=rel.unparseable,
            unparseable_examples=[repr(t)[:80] for t in bad["text"].head(3)],
            mean=fin(rel.mean),
            seed_r=fin(rel.seed_r),
            seed_r_std=fin(rel.seed_r_std),
            seed_pairs=rel.seed_pairs,
            icc_a1=fin(rel.icc_a1),
            icc_a1_ci=[fin(b) for b in rel.icc_a1_ci],
            icc_1=fin(rel.icc_1),
            kl=fin(rel.kl),
            kl_normalized=fin(rel.kl_normalized),
            discrimination=fin(rel.discrimination),
            informative_r=fin(rel.informative_r),
            distribution=fins(rel.distribution),
            icc_n=rel.icc_n,
            discrimination_n=rel.discrimination_n,
            informative_n=rel.informative_n,
        )
    else:
        fields.update(
            n_items=0,
            n_answers=0,
            n_parsed=0,
            unparseable={},
            unparseable_examples=[],
            mean=None,
            seed_r=None,
            seed_r_std=None,
            seed_pairs=0,
            icc_a1=None,
            icc_1=None,
            kl=None,
            kl_normalized=None,
            discrimination=None,
            informative_r=None,
            distribution=[],
        )
    dist = dist[dist["expected"].notna()] if len(dist) else dist
    if len(dist):
        use = distribution_scale_use(
            np.stack(dist["probs"].to_list()),
            dist["expected"].to_numpy(),
            dist["entropy"].to_numpy(),
            dist["scale_mass"].to_numpy(),
        )
        fields.update(
            dist_n=use.n_items,
            dist_expected=fin(use.mean_expected),
            dist_expected_sd=fin(use.expected_sd),
            dist_entropy=fin(use.mean_entropy),
            dist_scale_mass=fin(use.mean_scale_mass),
            dist_kl=fin(use.kl),
            dist_kl_normalized=fin(use.kl_normalized),
            dist_mean=fins(use.mean_distribution),
        )
    return ConditionEntry(**fields)


def per_completion(frame: pd.DataFrame, use_dist: bool) -> pd.DataFrame:
    """One rating per rated completion and condition (column ``rating``): the expected rating of
    the ``dist`` row, or the mean of the parsed sampled replies."""
    keys = ["item", "origin", "persona", "context", "completer", "strength", "rater"]
    if use_dist:
        part = frame[frame["mode"] == "dist"].dropna(subset=["expected"])
        return part[keys + ["expected"]].rename(columns={"expected": "rating"})
    part = frame[frame["mode"] == "sample"].dropna(subset=["value"])
    return part.groupby(keys, as_index=False)["value"].mean().rename(columns={"value": "rating"})


class RefusalGroup(Record):
    """Refusal and a per-task value (a rating, a utility) for one origin (or all tasks) of one model."""

    model: str
    origin: str
    n: int
    refusal_rate: Estimate
    rating_refused: Estimate
    rating_answered: Estimate
    r_pb: float | None
    p_value: float | None
    refused_ratings: list[float]
    answered_ratings: list[float]


def refusal_group(
    model: str, origin: str, refused: np.ndarray, ratings: np.ndarray, n_boot: int, seed: int
) -> RefusalGroup:
    """Refusal rate, ratings of refused vs answered tasks and r_pb for one group of completions.

    Args:
        model: Model label.
        origin: Origin label (or "all").
        refused: 0/1 per completion.
        ratings: Rating (or utility) per completion (NaN = none).
        n_boot: Bootstrap resamples.
        seed: Bootstrap seed.
    """
    from steerlab.errors import InputError
    from steerlab.stats import point_biserial

    ok = ~np.isnan(ratings)
    r = p = None
    try:
        pb = point_biserial(refused[ok].astype(float), ratings[ok])
        r, p = fin(pb.r), fin(pb.p_value)
    except InputError:  # no refused or no answered task, or constant ratings: undefined
        pass
    yes, no = ratings[ok & (refused == 1)], ratings[ok & (refused == 0)]
    return RefusalGroup(
        model=model,
        origin=origin,
        n=int(refused.size),
        refusal_rate=rate(list(refused.astype(bool))),
        rating_refused=mean(list(yes), n_boot, seed),
        rating_answered=mean(list(no), n_boot, seed),
        r_pb=r,
        p_value=p,
        refused_ratings=[round(float(x), 4) for x in yes],
        answered_ratings=[round(float(x), 4) for x in no],
    )
