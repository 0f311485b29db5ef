"""From a digit's canonical volume to what a model sees: `render` (a random rotation, point
clouds, the color) is the one path, used once for the fixed test and training sets and at every
draw for `FreshSide`, so fresh training batches come from exactly the test set's distribution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from otzoo.data.transforms import (
    POINTS_PER_DIGIT,
    paint,
    random_rotations,
    rotate_points,
    rotate_volumes,
    sample_points,
    voxelize_points,
)

if TYPE_CHECKING:
    from otzoo.data.pairs import DataConfig


def render(
    canonical: torch.Tensor,
    labels: torch.Tensor,
    hues: torch.Tensor,
    cfg: DataConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Canonical volumes [n, G, G, G] -> model-facing colored volumes [n, C, G, G, G] in [-1, 1]:
    a random rotation of `cfg.rotation`'s kind, for point clouds new points (drawn from the
    intensities, rotated, counted per voxel), then each sample's color. All randomness comes
    from `generator` (CPU); the work runs where `canonical` lives."""
    n = canonical.shape[0]
    matrices = random_rotations(cfg.rotation, n, generator)
    if cfg.style == "pointcloud":
        points = sample_points(canonical, POINTS_PER_DIGIT, generator)
        if matrices is not None:
            points = rotate_points(points, matrices, cfg.grid)
        vol = voxelize_points(points, cfg.grid)
    else:
        vol = canonical if matrices is None else rotate_volumes(canonical, matrices)
    return paint(vol, cfg.coloring, labels, hues) * 2.0 - 1.0


@dataclass
class FreshSide:
    """One side's training samples drawn afresh: a random sample, rendered with a new random
    transform at every draw, so training sees the continuous rotated distribution instead of
    one fixed rotated copy per digit. Its randomness is the caller's generator (the batch
    sampler's, whose state is checkpointed), so resume stays exact."""

    canonical: torch.Tensor  # [n, G, G, G]
    color: torch.Tensor  # [n]
    hue: torch.Tensor  # [n]
    config: DataConfig

    def __len__(self) -> int:
        return int(self.canonical.shape[0])

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n fresh volumes and the indices (into this side) of the samples they show."""
        idx = torch.randint(len(self), (n,), generator=generator)
        return self.render_at(idx, generator), idx

    def render_at(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The samples at `idx` (CPU int64), each with a new random transform."""
        on = idx.to(self.canonical.device)
        return render(self.canonical[on], self.color[idx], self.hue[idx], self.config, generator)

    def __call__(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.sample(n, generator)[0]

    def to(self, device: torch.device) -> FreshSide:
        """This side with its canonical volumes on `device` (drawn there, no host transfer)."""
        return FreshSide(self.canonical.to(device), self.color, self.hue, self.config)
