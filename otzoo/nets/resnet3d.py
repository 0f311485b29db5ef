"""ResNet3D: a scalar potential for voxel grids, x [N, C, D, H, W] -> [N].

Pre-activation residual blocks, a stride-2 conv between levels (doubling the channels), a
final norm + activation, global average pooling and one linear layer. GroupNorm only: a
potential is evaluated on several different batches within one OT step, and its value for a
sample must not depend on which batch it came in.

With `context=True` the input's per-channel mean scales and shifts the features after every
residual block and after the final norm and activation (FiLM, zero at init): GroupNorm centres
a sample-wide offset away, so without it the potential can hardly make its value, and with it
its gradient, depend on a property of the whole sample such as a digit's color.
"""

from __future__ import annotations

import torch
from torch import nn

from otzoo.nets.common import (
    check_norm,
    check_positive,
    check_voxels,
    film,
    film_layer,
    group_count,
    make_activation,
)


def _norm(channels: int, norm: str) -> nn.Module:
    return nn.GroupNorm(group_count(channels), channels) if norm == "group" else nn.Identity()


class ResBlock3D(nn.Module):
    """x + conv(act(norm(conv(act(norm(x)))))), channels unchanged."""

    def __init__(self, channels: int, norm: str, activation: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(channels, norm),
            make_activation(activation),
            nn.Conv3d(channels, channels, 3, padding=1, bias=norm == "none"),
            _norm(channels, norm),
            make_activation(activation),
            nn.Conv3d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet3D(nn.Module):
    """Scalar potential for voxels: x [N, C, D, H, W] -> [N].

    `levels` grids (the first at full resolution, each next one halved), `blocks` residual
    blocks per level, channels base * 2**level.
    """

    def __init__(
        self,
        in_channels: int,
        base: int = 16,
        blocks: int = 1,
        levels: int = 2,
        norm: str = "group",
        activation: str = "silu",
        context: bool = False,
    ) -> None:
        super().__init__()
        check_positive(in_channels=in_channels, base=base, blocks=blocks, levels=levels)
        check_norm(norm)
        make_activation(activation)
        self.in_channels = in_channels

        widths = [base * 2**level for level in range(levels)]
        layers: list[nn.Module] = [nn.Conv3d(in_channels, widths[0], 3, padding=1)]
        # body index -> channels there: a FiLM after each residual block and after the final
        # norm and activation (the body's last layer)
        film_widths: dict[int, int] = {}
        for level, width in enumerate(widths):
            if level > 0:
                layers.append(nn.Conv3d(widths[level - 1], width, 3, stride=2, padding=1))
            for _ in range(blocks):
                film_widths[len(layers)] = width
                layers.append(ResBlock3D(width, norm, activation))
        layers += [_norm(widths[-1], norm), make_activation(activation)]
        film_widths[len(layers) - 1] = widths[-1]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(widths[-1], 1)
        self.film_at = list(film_widths) if context else []
        self.films = nn.ModuleList(film_layer(in_channels, film_widths[i]) for i in self.film_at)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One potential value per sample."""
        check_voxels(x, self.in_channels, "ResNet3D")
        if not self.films:
            return self.out(self.body(x).mean(dim=(2, 3, 4))).squeeze(-1)
        films = dict(zip(self.film_at, self.films, strict=True))
        mean = x.mean(dim=(2, 3, 4))
        h = x
        for i, layer in enumerate(self.body):
            h = layer(h)
            if i in films:
                h = film(films[i], mean)(h)
        return self.out(h.mean(dim=(2, 3, 4))).squeeze(-1)
