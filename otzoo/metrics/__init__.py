"""Evaluation metrics shared by every solver (docs/design.md, "Metrics")."""

from otzoo.metrics.basic import (
    batched_apply,
    color_preservation,
    color_purity,
    diversity,
    energy_distance,
    frechet_distance,
    lit_share,
    transport_cost,
    w2_to_target,
    worst_color_accuracy,
)
from otzoo.metrics.haze import STROKE_GROUPS, pair_targets, stroke_split
from otzoo.metrics.uvp import cosine_metric, evaluate_map, l2_uvp

__all__ = [
    "STROKE_GROUPS",
    "batched_apply",
    "color_preservation",
    "color_purity",
    "cosine_metric",
    "diversity",
    "energy_distance",
    "evaluate_map",
    "frechet_distance",
    "l2_uvp",
    "lit_share",
    "pair_targets",
    "stroke_split",
    "transport_cost",
    "w2_to_target",
    "worst_color_accuracy",
]
