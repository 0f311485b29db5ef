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
    """A hedging map (docs/results.md, "What the haze is made of"): halfway to its partner."""
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


CHANCE = torch.tensor([0.0, 0.2, 0.6, 0.9])[:, None, None].expand(4, 4, 4)


def _graded(n: int, seed: int) -> torch.Tensor:
    """n red digits [n, 3, 4, 4, 4]: depth slice k lit with probability CHANCE[k]."""
    g = torch.Generator().manual_seed(seed)
    occ = torch.rand(n, 4, 4, 4, generator=g) < CHANCE
    x = torch.full((n, 3, 4, 4, 4), -1.0)
    x[:, 0] = torch.where(occ, 1.0, -1.0)
    return x


def test_a_map_to_the_average_target_hazes_where_targets_are_often_lit():
    """A slice lit 20% of the time averages to a dim haze (~0.2), those lit 60% / 90% brighter."""
    x, y = _graded(200, seed=1), _graded(200, seed=2)
    often = CHANCE.double()
    assert torch.allclose(target_frequency(_graded(2000, seed=3)), often, atol=0.04)
    average = 0.5 * (x + y[pair_targets(x, y)])  # halfway: every changed voxel at 0.5
    half = frequency_split(x, average, y, often)
    assert half["source_only_often_bright"] == 1.0 and half["target_only_often_bright"] == 1.0
    ghost = frequency_split(x, y.mean(dim=0, keepdim=True).expand_as(x), y, often)
    assert ghost["background_rare_dim"] == 0.0 and ghost["background_rare_bright"] == 0.0
    assert ghost["background_sometimes_dim"] == 1.0
    assert ghost["background_often_bright"] == 1.0
    perfect = frequency_split(x, y[pair_targets(x, y)], y, often)
    for label in FREQUENCY_BINS:
        for group in STROKE_GROUPS:
            if perfect[f"{group}_{label}_voxels"] > 0:
                assert perfect[f"{group}_{label}_dim"] == 0.0  # real digits have no dim voxel
        if perfect[f"target_only_{label}_voxels"] > 0:
            assert perfect[f"target_only_{label}_bright"] == 1.0
    voxels = sum(perfect[f"{g}_{b}_voxels"] for g in STROKE_GROUPS for b in FREQUENCY_BINS)
    assert voxels == 64  # the bins cut every group without gaps or overlaps


def test_frequency_split_refuses_a_frequency_of_another_grid():
    x = _graded(4, seed=0)
    with pytest.raises(ValueError, match="a frequency per voxel"):
        frequency_split(x, x, x, torch.zeros(3, 3, 3))
