"""Where a voxel map's lit voxels come from: the strokes it kept, failed to switch off, drew or
hazed (README, "What the haze is made of"). `lit_share` says there is too much light; this says
which part of the job the map left undone."""

from __future__ import annotations

import numpy as np
import torch

from otzoo.data.transforms import lit_voxels, unit_range
from otzoo.metrics.basic import HAZE_THRESHOLD, emd_iterations

STROKE_GROUPS = ("kept", "source_only", "target_only", "background")


def pair_targets(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """For each of n inputs, the index of its partner among n targets under the exact OT plan
    (ot.emd, uniform weights, squared Euclidean cost): with equal counts the plan is a
    permutation, so each input gets the real target it should become."""
    import ot

    if len(x) != len(y) or len(x) == 0:
        raise ValueError(
            f"pair_targets wants as many inputs as targets (> 0), got {len(x)}, {len(y)}"
        )
    u, v = x.detach().cpu().double().flatten(1), y.detach().cpu().double().flatten(1)
    cost = torch.cdist(u, v).square().numpy()
    w = np.full(len(x), 1.0 / len(x))
    plan = ot.emd(w, w, cost, numItermax=emd_iterations(len(x), len(y)))
    return torch.from_numpy(plan.argmax(axis=1))


def stroke_split(x: torch.Tensor, tx: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Split each input's voxels by the real target it is paired with (`pair_targets`): `kept`
    (lit in both), `source_only` (the input's strokes the target lacks: the map must switch them
    off), `target_only` (strokes it must draw) and `background` (lit in neither). For each group:
    voxels per sample (`<group>_voxels`), the output's mean brightness there (`<group>_brightness`,
    brightest channel in [0, 1]) and the share the output lights (`<group>_lit`, `lit_share`'s
    threshold). The identity scores source_only 1 / target_only 0; a perfect map 0 / 1.

    x, tx, y: [N, C, D, H, W] in [-1, 1], the same N (inputs, their outputs, real targets)."""
    if x.dim() != 5 or tx.shape != x.shape or y.shape != x.shape:
        raise ValueError(
            f"stroke_split wants inputs, outputs and targets of one [N, C, D, H, W] shape, got "
            f"{tuple(x.shape)}, {tuple(tx.shape)}, {tuple(y.shape)}"
        )
    partner = y[pair_targets(x, y)]
    lit_x, lit_y = lit_voxels(unit_range(x)), lit_voxels(unit_range(partner))
    out = unit_range(tx).amax(dim=1)
    groups = {
        "kept": lit_x & lit_y,
        "source_only": lit_x & ~lit_y,
        "target_only": ~lit_x & lit_y,
        "background": ~lit_x & ~lit_y,
    }
    scores: dict[str, float] = {}
    for name, mask in groups.items():
        count = int(mask.sum())
        scores[f"{name}_voxels"] = count / len(x)
        scores[f"{name}_brightness"] = float(out[mask].mean()) if count else float("nan")
        scores[f"{name}_lit"] = (
            float((out[mask] > HAZE_THRESHOLD).double().mean()) if count else float("nan")
        )
    return scores
