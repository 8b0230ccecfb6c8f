"""Reliability of one (rater, template) condition, from the statistics in :mod:`steerlab.stats`.

:func:`condition_reliability` gathers, for sampled ratings (one seed per sample):
cross-seed Pearson r (mean and std over seed pairs), ICC(A,1) and ICC(1,1) with items as
targets and seeds as raters, KL from uniform over the DECLARED scale, the item discrimination
rate d (share of items with a non-modal rating) and the informative correlation (cross-seed r
over those items), and the unparseable count by reason. :func:`distribution_scale_use` does
the same scale-use summary for answer distributions (one pass, no seeds): the mean
distribution over items, its KL from uniform, the mean entropy and the mean scale mass.

A statistic that is undefined on the data (fewer than two complete items, a constant column)
is NaN, never an exception: the report shows it as "–" next to its n.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from steerlab.errors import InputError
from steerlab.prefs._ratings import Scale
from steerlab.stats import (
    cross_seed_correlation,
    discrimination,
    icc_a1_interval,
    icc_across_seeds,
    informative_correlation,
    kl_from_uniform,
)

NAN = float("nan")


def _safe(fn: Callable[[], Any], default: Any = NAN) -> Any:
    try:
        return fn()
    except InputError:
        return default


@dataclass(frozen=True)
class ConditionReliability:
    """Reliability of sampled ratings of one (rater, template) condition (see the module docstring).

    Attributes:
        n_items: Items rated.
        n_answers: Sampled replies.
        n_parsed: Replies read as a rating on the scale.
        unparseable: Count per reason (empty, no_answer, off_scale).
        mean: Mean parsed rating.
        seed_r: Mean cross-seed Pearson r.
        seed_r_std: Its std over seed pairs.
        seed_pairs: Seed pairs with a defined r.
        icc_a1: ICC(A,1), two-way absolute agreement.
        icc_a1_ci: Its 95% confidence interval (McGraw & Wong; NaN bounds where undefined).
        icc_1: ICC(1,1), one-way.
        kl: KL from uniform (nats) over the declared scale.
        kl_normalized: KL / log K.
        discrimination: Share of items with a non-modal rating (seed 004's d).
        informative_r: Cross-seed r over those items.
        distribution: Share of parsed ratings at each declared value.
        icc_n: Items (targets) the ICC used: those rated by every seed (0 without an ICC).
        discrimination_n: Items with a parsed rating, the denominator of d.
        informative_n: Items with a non-modal rating (those of the informative r).
    """

    n_items: int
    n_answers: int
    n_parsed: int
    unparseable: dict[str, int]
    mean: float
    seed_r: float
    seed_r_std: float
    seed_pairs: int
    icc_a1: float
    icc_1: float
    kl: float
    kl_normalized: float
    discrimination: float
    informative_r: float
    distribution: tuple[float, ...]
    icc_n: int = 0
    icc_a1_ci: tuple[float, float] = (NAN, NAN)
    discrimination_n: int = 0
    informative_n: int = 0


def condition_reliability(frame: pd.DataFrame, scale: Scale) -> ConditionReliability:
    """Reliability of one (rater, template) condition's sampled ratings.

    Args:
        frame: Long ratings (item, seed, value, and ``parse`` with the parse reason); value NaN
            when unparseable.
        scale: The template's declared scale (ratings off it raise InputError).

    Example:
        >>> condition_reliability(df[(df.rater == "m") & (df.template == "anchored_1_5")],
        ...                       Scale.integer_range(1, 5)).seed_r
    """
    scale.check(frame["value"].to_numpy())
    parsed = frame.dropna(subset=["value"])
    reasons = frame["parse"].fillna("ok") if "parse" in frame.columns else pd.Series(["ok"] * len(frame))
    unparseable = {str(k): int(v) for k, v in reasons[reasons != "ok"].value_counts().items()}
    n_seeds = frame["seed"].nunique()
    corr = _safe(lambda: cross_seed_correlation(frame, scale=scale), None) if n_seeds > 1 else None
    icc = _safe(lambda: icc_across_seeds(frame, scale=scale), None) if n_seeds > 1 else None
    kl = _safe(lambda: kl_from_uniform(frame["value"].to_numpy(), scale), None)
    disc = _safe(lambda: discrimination(frame, scale=scale), None)
    info = _safe(lambda: informative_correlation(frame, scale=scale).mean) if n_seeds > 1 else NAN
    return ConditionReliability(
        n_items=int(frame["item"].nunique()),
        n_answers=len(frame),
        n_parsed=len(parsed),
        unparseable=unparseable,
        mean=float(parsed["value"].mean()) if len(parsed) else NAN,
        seed_r=corr.mean if corr else NAN,
        seed_r_std=corr.std if corr else NAN,
        seed_pairs=corr.n_pairs if corr else 0,
        icc_a1=icc.icc_a1 if icc else NAN,
        icc_a1_ci=icc_a1_interval(icc) if icc else (NAN, NAN),
        icc_1=icc.icc1 if icc else NAN,
        kl=kl.kl if kl else NAN,
        kl_normalized=kl.kl_normalized if kl else NAN,
        discrimination=disc.item_rate if disc else NAN,
        informative_r=float(info),
        distribution=kl.distribution if kl else tuple(NAN for _ in scale.values),
        icc_n=icc.n if icc else 0,
        discrimination_n=disc.n_items if disc else 0,
        informative_n=round(disc.item_rate * disc.n_items) if disc and np.isfinite(disc.item_rate) else 0,
    )


def seed_r_by_origin(
    frame: pd.DataFrame, scale: Scale, origins: Mapping[str, str]
) -> dict[str, tuple[float, float, int]]:
    """Per origin: (mean cross-seed r, its std over seed pairs, items) of one condition's sampled ratings.

    Args:
        frame: Long ratings of one (rater, template) condition.
        scale: The declared scale.
        origins: Item id → origin.
    """
    scale.check(frame["value"].to_numpy())
    out = {}
    for origin in sorted({origins[i] for i in frame["item"]}):
        part = frame[frame["item"].map(origins) == origin]
        corr = _safe(functools.partial(cross_seed_correlation, part, scale=scale), None)
        out[origin] = (corr.mean if corr else NAN, corr.std if corr else NAN, int(part["item"].nunique()))
    return out


@dataclass(frozen=True)
class DistributionScaleUse:
    """How answer distributions (one pass per item) use a template's scale.

    Attributes:
        n_items: Items with a distribution.
        mean_expected: Mean expected rating.
        mean_entropy: Mean entropy (nats).
        mean_scale_mass: Mean probability that the reply is an answer on the scale at all.
        mean_distribution: Mean of the items' distributions, per declared value.
        kl: KL(mean distribution ‖ uniform) in nats.
        kl_normalized: KL / log K.
        expected_sd: Spread (std) of the expected rating across items: does the rater tell
            items apart?
    """

    n_items: int
    mean_expected: float
    mean_entropy: float
    mean_scale_mass: float
    mean_distribution: tuple[float, ...]
    kl: float
    kl_normalized: float
    expected_sd: float


def distribution_scale_use(
    probs: np.ndarray, expected: np.ndarray, entropy: np.ndarray, scale_mass: np.ndarray
) -> DistributionScaleUse:
    """Scale use of answer distributions.

    Args:
        probs: Per item, P over the declared values, shape (n, K).
        expected: Expected ratings, shape (n,).
        entropy: Entropies, shape (n,).
        scale_mass: Scale masses, shape (n,).
    """
    probs = np.asarray(probs, dtype=float).reshape(len(expected), -1)
    if probs.shape[0] == 0:
        raise InputError("no answer distributions")
    mean = probs.mean(axis=0)
    k = mean.size
    nz = mean > 0
    kl = float(np.sum(mean[nz] * np.log(k * mean[nz])))
    return DistributionScaleUse(
        int(probs.shape[0]),
        float(np.mean(expected)),
        float(np.mean(entropy)),
        float(np.mean(scale_mass)),
        tuple(float(x) for x in mean),
        kl,
        kl / np.log(k),
        float(np.std(expected, ddof=1)) if len(expected) > 1 else NAN,
    )


__all__ = [
    "ConditionReliability",
    "DistributionScaleUse",
    "condition_reliability",
    "distribution_scale_use",
    "seed_r_by_origin",
]
