"""Task consistency: how much an item's rating moves across seeds (and templates).

For each item:
  * intra term: for every (rater, template) condition with >= 2 non-missing seeds, the
    population std (ddof=0) of the per-seed ratings (samples averaged) divided by half the
    scale range, (hi - lo) / 2, which is the largest std a rating bounded by [lo, hi] can
    have; so the term is in [0, 1]. Averaged over the item's conditions.
  * inter term (optional): for every rater with >= 2 templates, the item's mean rating per
    template rescaled to [0, 1] by that template's scale, its population std across
    templates divided by 0.5. Averaged over raters.

    consistency = 1 - ((1 - w) * intra + w * inter),   w = inter_template_weight

A rater alternating 1, 5, 1, 5 on a 1..5 scale gets std 2 = half the range: consistency 0
(seed 004's bailbench_632 example). Seed 004 first used w = 0.1, later w = 0 (default).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from steerlab.errors import InputError
from steerlab.prefs._ratings import Scale, check_ratings_frame


def _check_scales(frame: pd.DataFrame, scales: Mapping[str, Scale]) -> None:
    unknown = sorted(set(frame["template"]) - set(scales))
    if unknown:
        raise InputError(f"no declared scale for template(s) {unknown[:3]}")
    for name, part in frame.groupby("template"):
        scales[name].check(part["value"].to_numpy())


def task_consistency(
    ratings: pd.DataFrame, scales: Mapping[str, Scale], inter_template_weight: float = 0.0
) -> pd.DataFrame:
    """Consistency score per item (see module docstring).

    Args:
        ratings: Long ratings (item, rater, template, seed, sample, value).
        scales: Declared scale of every template.
        inter_template_weight: Weight ``w`` of the inter-template term, in [0, 1].

    Returns:
        DataFrame indexed by item with ``intra``, ``inter``, ``consistency``,
        ``n_conditions``. ``consistency`` is NaN when a needed term is undefined (fewer than
        two seeds in every condition, or -- with w > 0 -- fewer than two templates).
    """
    if not 0 <= inter_template_weight <= 1:
        raise InputError(f"inter_template_weight must be in [0, 1], got {inter_template_weight}")
    frame = check_ratings_frame(ratings, ("item", "rater", "template", "seed", "value"))
    frame = frame.assign(template=frame["template"].astype(str))
    _check_scales(frame, scales)
    frame = frame.dropna(subset=["value"])
    lo = frame["template"].map(lambda t: scales[t].lo)
    half_range = frame["template"].map(lambda t: (scales[t].hi - scales[t].lo) / 2)
    frame = frame.assign(unit=(frame["value"] - lo) / (2 * half_range))  # in [0, 1]
    per_seed = frame.groupby(["item", "rater", "template", "seed"])["unit"].mean()
    by_cond = per_seed.groupby(level=["item", "rater", "template"])
    cond_std = by_cond.std(ddof=0)[by_cond.count() >= 2] / 0.5  # std / half range
    intra = cond_std.groupby(level="item").mean()
    per_template = frame.groupby(["item", "rater", "template"])["unit"].mean()
    by_rater = per_template.groupby(level=["item", "rater"])
    inter = (by_rater.std(ddof=0)[by_rater.count() >= 2] / 0.5).groupby(level="item").mean()
    items = pd.Index(sorted(frame["item"].unique()), name="item")
    out = pd.DataFrame({"intra": intra.reindex(items), "inter": inter.reindex(items)})
    out["n_conditions"] = cond_std.groupby(level="item").size().reindex(items).fillna(0).astype(int)
    w = inter_template_weight
    inter_term = out["inter"] * w if w > 0 else 0.0
    out["consistency"] = 1 - ((1 - w) * out["intra"] + inter_term)
    return out
