"""Reliability and group statistics for ratings (cross-seed correlation, ICC, KL from
uniform, discrimination, task consistency, point-biserial, Mann-Whitney) and bootstrap
intervals (:mod:`steerlab.stats.bootstrap`)."""

from steerlab.stats.consistency import task_consistency
from steerlab.stats.correlation import CrossSeedCorrelation, correlation_over_seed_pairs, cross_seed_correlation
from steerlab.stats.discrimination import Discrimination, discrimination, informative_correlation
from steerlab.stats.distribution import KLFromUniform, kl_from_uniform
from steerlab.stats.group_tests import MannWhitney, PointBiserial, mann_whitney, point_biserial
from steerlab.stats.groups import per_group
from steerlab.stats.icc import ICCResult, icc_a1_interval, icc_across_seeds, icc_table

__all__ = [
    "CrossSeedCorrelation",
    "Discrimination",
    "ICCResult",
    "KLFromUniform",
    "MannWhitney",
    "PointBiserial",
    "correlation_over_seed_pairs",
    "cross_seed_correlation",
    "discrimination",
    "icc_a1_interval",
    "icc_across_seeds",
    "icc_table",
    "informative_correlation",
    "kl_from_uniform",
    "mann_whitney",
    "per_group",
    "point_biserial",
    "task_consistency",
]
