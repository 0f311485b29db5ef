"""Where a voxel map's lit voxels come from: the strokes it kept, failed to switch off, drew or
hazed (README, "What the haze is made of"). `lit_share` says there is too much light; this says
which part of the job the map left undone."""

from __future__ import annotations

import numpy as np
import torch

from otzoo.data.transforms import lit_voxels, unit_range
from otzoo.metrics.basic import HAZE_THRESHOLD, emd_iterations

STROKE_GROUPS = ("kept", "source_only", "target_only", "background")
# how often real targets light a voxel: rarely, sometimes, often (frequency_split)
FREQUENCY_BINS = {"rare": (0.0, 0.02), "sometimes": (0.02, 0.25), "often": (0.25, 1.0)}
DIM_CEILING = 0.5  # a lit voxel below half brightness is haze: every real lit voxel is at full


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
    groups, out = _groups(x, tx, y)
    scores: dict[str, float] = {}
    for name, mask in groups.items():
        count = int(mask.sum())
        scores[f"{name}_voxels"] = count / len(x)
        scores[f"{name}_brightness"] = float(out[mask].mean()) if count else float("nan")
        scores[f"{name}_lit"] = (
            float((out[mask] > HAZE_THRESHOLD).double().mean()) if count else float("nan")
        )
    return scores


def _groups(
    x: torch.Tensor, tx: torch.Tensor, y: torch.Tensor
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The four stroke groups as bool masks [N, D, H, W] (each input against its OT partner)
    and the outputs' brightness [N, D, H, W] (brightest channel in [0, 1])."""
    if x.dim() != 5 or tx.shape != x.shape or y.shape != x.shape:
        raise ValueError(
            f"the stroke split wants inputs, outputs and targets of one [N, C, D, H, W] shape, got "
            f"{tuple(x.shape)}, {tuple(tx.shape)}, {tuple(y.shape)}"
        )
    partner = y[pair_targets(x, y)]
    lit_x, lit_y = lit_voxels(unit_range(x)), lit_voxels(unit_range(partner))
    groups = {
        "kept": lit_x & lit_y,
        "source_only": lit_x & ~lit_y,
        "target_only": ~lit_x & lit_y,
        "background": ~lit_x & ~lit_y,
    }
    return groups, unit_range(tx).amax(dim=1)


def target_frequency(y: torch.Tensor) -> torch.Tensor:
    """[D, H, W]: the share of real targets `y` ([N, C, D, H, W] in [-1, 1]) lighting each voxel."""
    return lit_voxels(unit_range(y)).double().mean(dim=0)


def frequency_split(
    x: torch.Tensor, tx: torch.Tensor, y: torch.Tensor, frequency: torch.Tensor
) -> dict[str, float]:
    """The stroke split cut by how often real targets light each voxel (`frequency` [D, H, W],
    e.g. `target_frequency` of the training targets; FREQUENCY_BINS). Per group and bin:
    `<group>_<bin>_voxels` per sample, and the shares of them the output lights `dim` (brightness
    in (HAZE_THRESHOLD, DIM_CEILING): real digits have none) and `bright` (>= DIM_CEILING).
    Bright voxels where the paired target is dark can be another plausible target; dim ones
    are haze, and a map that hedges between targets puts them where targets often have light.

    x, tx, y: as `stroke_split`."""
    groups, out = _groups(x, tx, y)
    if frequency.shape != out.shape[1:]:
        raise ValueError(
            f"frequency_split wants a frequency per voxel {tuple(out.shape[1:])}, "
            f"got {tuple(frequency.shape)}"
        )
    dim = (out > HAZE_THRESHOLD) & (out < DIM_CEILING)
    bright = out >= DIM_CEILING
    bins = {
        label: ((frequency >= low) & ((frequency < high) | (high == 1.0))).to(out.device)
        for label, (low, high) in FREQUENCY_BINS.items()
    }
    nan = float("nan")
    scores: dict[str, float] = {}
    for name, mask in groups.items():
        for label, inside in bins.items():
            cell = mask & inside
            count = int(cell.sum())
            scores[f"{name}_{label}_voxels"] = count / len(x)
            scores[f"{name}_{label}_dim"] = float(dim[cell].double().mean()) if count else nan
            scores[f"{name}_{label}_bright"] = float(bright[cell].double().mean()) if count else nan
    return scores
