"""Preference data and models: pairwise counts, Thurstonian / Bradley-Terry fits,
active learning of utilities, and position-bias analysis. No torch needed."""

from steerlab.prefs._items import Item, items_from_frame, items_to_frame, origin_map
from steerlab.prefs._pairs import ComparisonGraph, PairCounts, PairOutcome
from steerlab.prefs._ratings import (
    RATING_COLUMNS,
    Rating,
    Scale,
    ratings_from_frame,
    ratings_to_frame,
)
from steerlab.prefs.active import (
    ActiveLearningConfig,
    ActiveLearningResult,
    RoundRecord,
    run_active_learning,
)
from steerlab.prefs.bradley_terry import BradleyTerryFit, fit_bradley_terry
from steerlab.prefs.evaluate import PairMetrics, evaluate_pairs, score_probabilities
from steerlab.prefs.graphs import random_pairs, random_regular_graph
from steerlab.prefs.position import (
    FirstPositionRate,
    OrderConsistency,
    PositionDecomposition,
    first_position_rate,
    order_consistency,
    position_decomposition,
    win_rate_by_position,
)
from steerlab.prefs.resample import MuIntervals, bootstrap_mu
from steerlab.prefs.synthetic import ThurstonianOracle
from steerlab.prefs.thurstonian import ThurstonianFit, fit_thurstonian

__all__ = [
    "RATING_COLUMNS",
    "ActiveLearningConfig",
    "ActiveLearningResult",
    "BradleyTerryFit",
    "ComparisonGraph",
    "FirstPositionRate",
    "Item",
    "MuIntervals",
    "OrderConsistency",
    "PairCounts",
    "PairMetrics",
    "PairOutcome",
    "PositionDecomposition",
    "Rating",
    "RoundRecord",
    "Scale",
    "ThurstonianFit",
    "ThurstonianOracle",
    "bootstrap_mu",
    "evaluate_pairs",
    "first_position_rate",
    "fit_bradley_terry",
    "fit_thurstonian",
    "items_from_frame",
    "items_to_frame",
    "order_consistency",
    "origin_map",
    "position_decomposition",
    "random_pairs",
    "random_regular_graph",
    "ratings_from_frame",
    "ratings_to_frame",
    "run_active_learning",
    "score_probabilities",
    "win_rate_by_position",
]
