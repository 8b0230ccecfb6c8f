"""Per-group breakdowns."""

import pandas as pd
import pytest

from steerlab.errors import InputError
from steerlab.prefs import Scale
from steerlab.stats import cross_seed_correlation, per_group

S15 = Scale.integer_range(1, 5)


def test_per_group_splits_items_by_origin():
    rows = [
        ("a1", 0, 1),
        ("a1", 1, 2),
        ("a2", 0, 2),
        ("a2", 1, 3),
        ("a3", 0, 3),
        ("a3", 1, 5),
        ("b1", 0, 1),
        ("b1", 1, 3),
        ("b2", 0, 2),
        ("b2", 1, 2),
        ("b3", 0, 3),
        ("b3", 1, 1),
    ]
    frame = pd.DataFrame(rows, columns=["item", "seed", "value"])
    origins = {i: i[0] for i in frame["item"].unique()}
    out = per_group(frame, origins, lambda d: cross_seed_correlation(d, scale=S15))
    assert list(out.index) == ["a", "b"]
    # group b: seeds (1,2,3) vs (3,2,1): r = -1
    assert out.loc["b", "mean"] == pytest.approx(-1.0)
    a = frame[frame["item"].str.startswith("a")]
    assert out.loc["a", "mean"] == pytest.approx(cross_seed_correlation(a, scale=S15).mean)
    scalar = per_group(frame, origins, lambda d: d["value"].mean())
    assert scalar.loc["a", "value"] == pytest.approx(16 / 6)
    with pytest.raises(InputError, match="no group label"):
        per_group(frame, {"a1": "a"}, len)
