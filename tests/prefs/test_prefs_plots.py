"""Each preference plot writes a non-empty PNG, from frames and from results files."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from steerlab.errors import InputError
from steerlab.prefs import PairCounts, Scale, ThurstonianOracle, fit_thurstonian, win_rate_by_position
from steerlab.report import prefs_plots as pp

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == PNG and len(data) > 1000


@pytest.fixture(scope="module")
def pairs() -> PairCounts:
    rng = np.random.default_rng(0)
    n = 40
    oracle = ThurstonianOracle(rng.normal(size=n), np.ones(n), rng, position_bias=-0.2)
    i, j = np.triu_indices(n, 1)
    return oracle.counts(tuple(f"{'ab'[k % 2]}{k}" for k in range(n)), np.r_[i, j], np.r_[j, i])


def test_utilities_by_origin(tmp_path, pairs):
    fit = fit_thurstonian(pairs).to_frame()
    csv = tmp_path / "utilities.csv"
    fit.assign(origin=fit["id"].str[0]).to_csv(csv, index=False)
    assert _is_png(pp.plot_utilities_by_origin(csv, tmp_path / "box.png"))
    origins = {i: i[0] for i in fit["id"]}
    assert _is_png(pp.plot_utilities_by_origin(fit, tmp_path / "violin.png", origins, kind="violin"))
    with pytest.raises(InputError):
        pp.plot_utilities_by_origin(fit, tmp_path / "x.png")


def test_kl_vs_icc_and_seed_sensitivity(tmp_path):
    summary = pd.DataFrame(
        {
            "label": ["a", "b", "c"],
            "kl": [0.4, 0.9, 2.0],
            "icc": [0.6, 0.87, 0.43],
            "mean": [0.64, 0.55, 0.09],
            "std": [0.03, 0.04, np.nan],
        }
    )
    assert _is_png(pp.plot_kl_vs_icc(summary, tmp_path / "kl.png"))
    path = tmp_path / "s.jsonl"
    summary.to_json(path, orient="records", lines=True)
    assert _is_png(pp.plot_seed_sensitivity(path, tmp_path / "seeds.png"))


def test_rating_distributions(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"rater": np.repeat(["m1", "m2"], 50), "value": rng.integers(1, 6, 100).astype(float)})
    assert _is_png(pp.plot_rating_distributions(frame, Scale.integer_range(1, 5), tmp_path / "d.png"))
    with pytest.raises(InputError, match="declared support"):
        pp.plot_rating_distributions(frame.assign(value=9.0), Scale.integer_range(1, 5), tmp_path / "e.png")


def test_position_bias(tmp_path, pairs):
    groups = {i: i[0] for i in pairs.item_ids}
    table = pd.DataFrame([dataclasses.asdict(r) for r in win_rate_by_position(pairs, groups)])
    assert _is_png(pp.plot_position_bias(table, tmp_path / "pos.png"))
