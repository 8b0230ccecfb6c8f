"""Statistics over one template's ratings refuse answers off the template's declared scale."""

import numpy as np
import pandas as pd
import pytest

from steerlab.errors import InputError
from steerlab.prefs import Scale
from steerlab.stats import cross_seed_correlation, discrimination, icc_across_seeds, informative_correlation

S15 = Scale.integer_range(1, 5, "stated_1_5")
STATS = {
    "icc_across_seeds": lambda d, s: icc_across_seeds(d, scale=s).icc_a1,
    "cross_seed_correlation": lambda d, s: cross_seed_correlation(d, scale=s).mean,
    "discrimination": lambda d, s: discrimination(d, scale=s).item_rate,
    "informative_correlation": lambda d, s: informative_correlation(d, scale=s).mean,
}


def _frame(values: dict[str, list[list[float]]]) -> pd.DataFrame:
    """item -> per seed, the list of sample values."""
    rows = [
        (i, "m", "stated_1_5", seed, k, v)
        for i, seeds in values.items()
        for seed, samples in enumerate(seeds)
        for k, v in enumerate(samples)
    ]
    return pd.DataFrame(rows, columns=["item", "rater", "template", "seed", "sample", "value"])


GOOD = {"a": [[1, 2], [2]], "b": [[3], [4, 4]], "c": [[5], [4]], "d": [[2], [1, 2]]}


@pytest.mark.parametrize("name", STATS)
@pytest.mark.parametrize("bad", [7.0, 0.0, 2.5])
def test_off_scale_rating_raises(name, bad):
    # Regression: these accepted a 99 on a 1..5 template although docs/prefs.md said they raise.
    values = {k: [list(s) for s in v] for k, v in GOOD.items()}
    values["c"][1].append(bad)
    with pytest.raises(InputError, match=f"rating {bad:g} is outside the declared support of scale 'stated_1_5'"):
        STATS[name](_frame(values), S15)


@pytest.mark.parametrize("name", STATS)
def test_on_scale_ratings_give_the_unchecked_numbers(name):
    # Raw answers are checked, not sample means: item a's seed 0 averages to 1.5, which is fine.
    frame = _frame(GOOD)
    assert STATS[name](frame, S15) == pytest.approx(STATS[name](frame, None), nan_ok=True)


def test_checked_cross_seed_correlation_by_hand():
    # seed means: a (1.5, 2), b (3, 4), c (5, 4), d (2, 1.5)
    r = cross_seed_correlation(_frame(GOOD), scale=S15).mean
    assert r == pytest.approx(np.corrcoef([1.5, 3, 5, 2], [2, 4, 4, 1.5])[0, 1])


def test_scale_must_be_stated():
    with pytest.raises(TypeError, match="scale"):
        cross_seed_correlation(_frame(GOOD))  # type: ignore[call-arg]
