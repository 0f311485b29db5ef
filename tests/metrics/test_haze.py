"""The stroke split (otzoo.metrics.haze) against maps whose answer is known."""

from __future__ import annotations

import pytest
import torch

from otzoo.metrics import (
    FREQUENCY_BINS,
    STROKE_GROUPS,
    frequency_split,
    pair_targets,
    stroke_split,
    target_frequency,
)


def _strokes(n: int, seed: int) -> torch.Tensor:
    """n red voxel digits [n, 3, 4, 4, 4] in [-1, 1]: a shared bar plus a random stroke each."""
    g = torch.Generator().manual_seed(seed)
    occ = torch.rand(n, 4, 4, 4, generator=g) < 0.3
    occ[:, 0, 0, :] = True  # a stroke every sample has
    x = torch.full((n, 3, 4, 4, 4), -1.0)
    x[:, 0] = torch.where(occ, 1.0, -1.0)
    return x


def test_pairing_finds_the_permutation_that_made_the_targets():
    x = _strokes(7, seed=0)
    perm = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    y = torch.empty_like(x)
    y[perm] = x  # input i's own copy sits at perm[i]
    assert pair_targets(x, y).tolist() == perm.tolist()


def test_identity_keeps_every_source_stroke_and_draws_nothing():
    x, y = _strokes(8, seed=1), _strokes(8, seed=2)
    s = stroke_split(x, x, y)
    assert s["source_only_voxels"] > 0 and s["target_only_voxels"] > 0
    assert s["source_only_lit"] == 1.0 and s["source_only_brightness"] == 1.0
    assert s["target_only_lit"] == 0.0 and s["background_lit"] == 0.0
    assert s["kept_lit"] == 1.0


def test_a_perfect_map_switches_source_strokes_off_and_draws_the_target():
    x, y = _strokes(8, seed=1), _strokes(8, seed=2)
    perfect = y[pair_targets(x, y)]
    s = stroke_split(x, perfect, y)
    assert s["source_only_lit"] == 0.0 and s["target_only_lit"] == 1.0
    assert s["kept_brightness"] == 1.0 and s["background_lit"] == 0.0


def test_a_halfway_map_reads_as_half_bright_on_both_groups():
    """The lazy map the README measures: halfway from each input to its partner."""
    x, y = _strokes(8, seed=1), _strokes(8, seed=2)
    half = 0.5 * (x + y[pair_targets(x, y)])
    s = stroke_split(x, half, y)
    assert s["source_only_brightness"] == pytest.approx(0.5)
    assert s["target_only_brightness"] == pytest.approx(0.5)
    assert s["kept_brightness"] == pytest.approx(1.0)


def test_mismatched_shapes_are_refused():
    x = _strokes(4, seed=0)
    with pytest.raises(ValueError, match="one \\[N, C, D, H, W\\] shape"):
        stroke_split(x, x[:3], x)
    with pytest.raises(ValueError, match="as many inputs as targets"):
        pair_targets(x, x[:3])


def _graded(n: int, seed: int) -> torch.Tensor:
    """n red digits [n, 3, 4, 4, 4]: depth slice k lit with probability (0, 0.1, 0.6, 0.9)[k]."""
    g = torch.Generator().manual_seed(seed)
    chance = torch.tensor([0.0, 0.1, 0.6, 0.9])[:, None, None].expand(4, 4, 4)
    occ = torch.rand(n, 4, 4, 4, generator=g) < chance
    x = torch.full((n, 3, 4, 4, 4), -1.0)
    x[:, 0] = torch.where(occ, 1.0, -1.0)
    return x


def test_a_map_to_the_average_target_draws_a_ghost_that_grows_with_frequency():
    x, y = _graded(40, seed=1), _graded(40, seed=2)
    often = target_frequency(_graded(400, seed=3))
    average = y.mean(dim=0, keepdim=True).expand_as(x)
    ghost = frequency_split(x, average, y, often)
    assert ghost["background_rare_brightness"] < 0.05
    assert ghost["background_often_brightness"] > 0.5
    assert ghost["background_sometimes_brightness"] < ghost["background_often_brightness"]
    perfect = frequency_split(x, y[pair_targets(x, y)], y, often)
    for label in FREQUENCY_BINS:
        if perfect[f"background_{label}_voxels"] > 0:
            assert perfect[f"background_{label}_brightness"] == 0.0
        if perfect[f"target_only_{label}_voxels"] > 0:
            assert perfect[f"target_only_{label}_brightness"] == 1.0
    voxels = sum(perfect[f"{g}_{b}_voxels"] for g in STROKE_GROUPS for b in FREQUENCY_BINS)
    assert voxels == 64  # the bins cut every group without gaps or overlaps


def test_frequency_split_refuses_a_frequency_of_another_grid():
    x = _graded(4, seed=0)
    with pytest.raises(ValueError, match="a frequency per voxel"):
        frequency_split(x, x, x, torch.zeros(3, 3, 3))
