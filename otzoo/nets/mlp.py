"""MLP: vector maps and potentials, x [N, d_in] -> [N, d_out] ([N] when d_out == 1).

With `residual=True` the output is x + head(features) and the head starts at zero, so a map
is exactly the identity at init, the natural start for OT between nearby distributions. With
`flatten=True` it takes any [N, ...] (a dense potential on voxels: a weight per voxel), and with
`embed` (a PatchEmbed) it first maps the grid to patch features.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from otzoo.nets.common import NetConfigError, check_positive, make_activation


class MLP(nn.Module):
    """Vector maps and potentials: x [N, d_in] -> [N, d_out] (d_out=1 returns [N])."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: tuple[int, ...] = (128, 128),
        activation: str = "silu",
        residual: bool = False,
        flatten: bool = False,
        embed: nn.Module | None = None,
    ) -> None:
        super().__init__()
        check_positive(in_dim=in_dim, out_dim=out_dim)
        check_positive(**{f"hidden[{i}]": width for i, width in enumerate(hidden)})
        if residual and in_dim != out_dim:
            raise NetConfigError(
                f"residual MLP needs in_dim == out_dim (got {in_dim} and {out_dim}); "
                "pass residual=False"
            )
        if residual and flatten:
            raise NetConfigError("a flattening MLP is a potential; pass residual=False")
        make_activation(activation)
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.residual = residual
        self.flatten = flatten
        self.embed = embed

        layers: list[nn.Module] = []
        width = in_dim
        for next_width in hidden:
            layers += [nn.Linear(width, next_width), make_activation(activation)]
            width = next_width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, out_dim)
        if residual:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the map (or potential) to a batch of vectors (`flatten`: of any [N, ...])."""
        if self.embed is not None:
            x = self.embed(x)
        if self.flatten:
            x = x.flatten(1)
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise NetConfigError(
                f"MLP expects vectors of shape [N, {self.in_dim}], got {list(x.shape)}; "
                "flatten the input or build the MLP with the right in_dim"
            )
        out = self.head(self.body(x))
        if self.residual:
            out = x + out
        return out.squeeze(-1) if self.out_dim == 1 else out


class PatchEmbed(nn.Module):
    """Each side^3 patch of a voxel grid [N, C, D, H, W] -> `width` features, one linear map shared
    by all patches, then the activation: [N, width, D/side, H/side, W/side]. Before a dense
    potential it lifts the rank of the potential's input gradient: an MLP's gradient lies in the
    span of its first layer's rows (128 of 12,288 directions at 16^3); after a PatchEmbed each
    patch's part of it is gated by that patch's own features."""

    def __init__(self, channels: int, width: int, side: int = 2, activation: str = "elu") -> None:
        super().__init__()
        check_positive(channels=channels, width=width, side=side)
        self.side = side
        self.proj = nn.Conv3d(channels, width, kernel_size=side, stride=side)
        self.act = make_activation(activation)

    def out_features(self, grid: tuple[int, ...]) -> int:
        """Features per sample on a `grid` (D, H, W): what the MLP after it takes."""
        if any(n % self.side for n in grid):
            raise NetConfigError(
                f"patches of side {self.side} need a grid divisible by it, got {list(grid)}; "
                f"use --set grid=N with N a multiple of {self.side}, or no patch embedding"
            )
        return self.proj.out_channels * math.prod(n // self.side for n in grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.out_features(tuple(x.shape[2:]))  # refuses a grid it cannot split
        return self.act(self.proj(x))
