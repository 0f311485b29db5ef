"""Generator3D: a map from a latent vector to voxels, z [N, ...] -> [N, C, D, H, W] in (-1, 1).

The map OTM generates with (Rout et al. 2022 use a GAN-style decoder for T on a latent, with Q the
latent's upsampling only in the cost): one linear layer to the coarsest grid, then per level a
trilinear doubling (to the exact size, so odd grids work) and two 3x3x3 convs (the first halving
the channels), a 3x3x3 conv to the output channels and a tanh, so outputs stay in the data's range.
A UNet on the upsampled latent instead keeps the noise's local layout: its outputs follow the sign
of the noise voxel by voxel (docs/results.md, "Generation from noise"). GroupNorm, not the
reference's BatchNorm: a sample's output must not depend on its batch. With `one_color` every voxel
lies in the plane of gray and one hue drawn from the latent per sample (UNet3D's hue plane, with a
generated color in place of the input's), so a generated digit has one color, as real ones do: the
free decoder mixes hues along a stroke.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from otzoo.nets.common import (
    NetConfigError,
    check_norm,
    check_positive,
    conv_norm_act,
    group_count,
    make_activation,
)
from otzoo.nets.unet3d import hue_plane_step


def level_sizes(grid: tuple[int, ...], levels: int) -> list[tuple[int, ...]]:
    """The grid at each level, finest first: each next one halved, rounding up."""
    sizes = [tuple(grid)]
    for _ in range(levels):
        sizes.append(tuple((s + 1) // 2 for s in sizes[-1]))
    return sizes


class Generator3D(nn.Module):
    """Latent [N, ...] (latent_dim numbers a sample) -> voxels [N, out_channels, *grid]."""

    def __init__(
        self,
        latent_dim: int,
        out_channels: int,
        grid: tuple[int, ...],
        base: int = 16,
        levels: int = 2,
        norm: str = "group",
        activation: str = "silu",
        one_color: bool = False,
    ) -> None:
        super().__init__()
        check_positive(latent_dim=latent_dim, out_channels=out_channels, base=base, levels=levels)
        check_positive(**{f"grid[{i}]": int(s) for i, s in enumerate(grid)})
        check_norm(norm)
        make_activation(activation)
        self.latent_dim = latent_dim
        self.sizes = level_sizes(tuple(int(s) for s in grid), levels)
        widths = [base * 2**level for level in range(levels + 1)]
        self.coarse_width = widths[-1]
        self.stem = nn.Linear(latent_dim, widths[-1] * math.prod(self.sizes[-1]))
        stem_norm = [nn.GroupNorm(group_count(widths[-1]), widths[-1])] if norm == "group" else []
        self.stem_act = nn.Sequential(*stem_norm, make_activation(activation))
        # ups[level] takes level+1 features up to level; applied from the deepest level down
        self.ups = nn.ModuleList(
            nn.Sequential(
                conv_norm_act(widths[level + 1], widths[level], norm, activation),
                conv_norm_act(widths[level], widths[level], norm, activation),
            )
            for level in range(levels)
        )
        self.one_color = one_color
        # one_color: two numbers a voxel (along gray, along the sample's hue) and one hue a sample
        self.head = nn.Conv3d(widths[0], 2 if one_color else out_channels, kernel_size=3, padding=1)
        self.hue = nn.Linear(latent_dim, out_channels) if one_color else None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z[0].numel() != self.latent_dim:
            raise NetConfigError(
                f"Generator3D was built for latents of {self.latent_dim} numbers, got shape "
                f"{list(z.shape)}; build it with latent_dim={z[0].numel()}"
            )
        flat = z.flatten(1)
        h = self.stem_act(self.stem(flat).view(z.shape[0], self.coarse_width, *self.sizes[-1]))
        for level in reversed(range(len(self.ups))):
            h = F.interpolate(h, size=self.sizes[level], mode="trilinear", align_corners=False)
            h = self.ups[level](h)
        out = self.head(h)
        if self.hue is not None:  # the sample's hue stands in for hue_plane_step's input color
            out = hue_plane_step(out, self.hue(flat)[:, :, None, None, None])
        return torch.tanh(out)
