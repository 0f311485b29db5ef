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
from otzoo.metrics.haze import (
    FREQUENCY_BINS,
    STROKE_GROUPS,
    frequency_split,
    pair_targets,
    stroke_split,
    target_frequency,
)
from otzoo.metrics.uvp import cosine_metric, evaluate_map, l2_uvp

__all__ = [
    "FREQUENCY_BINS",
    "STROKE_GROUPS",
    "batched_apply",
    "color_preservation",
    "color_purity",
    "cosine_metric",
    "diversity",
    "energy_distance",
    "evaluate_map",
    "frequency_split",
    "frechet_distance",
    "l2_uvp",
    "lit_share",
    "pair_targets",
    "stroke_split",
    "target_frequency",
    "transport_cost",
    "w2_to_target",
    "worst_color_accuracy",
]
