"""UNet3D: the transport map T for voxel grids, x [N, C, D, H, W] -> same shape.

Each level halves the grid with a stride-2 conv and doubles the channels (base * 2**level);
the way up is trilinear upsampling to the skip's exact size, concatenation with the skip, and
two convs. Odd grid sizes therefore work too. With `residual=True` the output is
x + head(features) and the head starts at zero, so T is exactly the identity at init, which is
where an OT map for a small displacement should start. With `cond_dim > 0` a vector
cond [N, cond_dim] (e.g. a flow's time embedding) scales and shifts every stage's features
(FiLM: h * (1 + scale) + shift, zero at init), so the condition reaches every level instead
of entering once as an input channel that the first GroupNorm mostly centres away. With
`context=True` the input's per-channel mean joins that condition: a property of the whole
sample, such as a digit's color, then reaches every stage, where GroupNorm would centre a
sample-wide offset away, so a stroke the map draws where the input has none can take it.
With `hue_plane=True` (as many channels out as in) the head gives two numbers per voxel instead
of C: how far the voxel moves along gray (all channels alike) and along the input's mean chroma
(its per-channel mean minus the mean over channels, to unit length); without `residual` that
move is the output (a flow's velocity). A voxel the map adds to a one-colored input then takes
that input's hue, none, or (moved the wrong way) its opposite, never a third: the potential's
slope at such voxels has no component toward the input's hue (docs/results.md, "Why the added
strokes stay wrong").
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from otzoo.nets.common import (
    NetConfigError,
    check_count,
    check_norm,
    check_positive,
    check_voxels,
    conv_norm_act,
    film,
    film_layer,
    make_activation,
)


def max_depth(grid: tuple[int, ...]) -> int:
    """Deepest UNet for this grid: each level halves it (rounding up), the coarsest keeps >= 2."""
    sizes = list(grid)
    depth = 0
    while min((s + 1) // 2 for s in sizes) >= 2:
        sizes = [(s + 1) // 2 for s in sizes]
        depth += 1
    return depth


def hue_plane_basis(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vectors (gray, x's mean chroma), each [N, C, 1, 1, 1], orthogonal (the chroma sums
    to zero over channels): the plane in which every voxel of a one-colored digit lies (rgby red
    (1, V, V) and hue h * V alike). A gray input (one channel included) has no chroma: zero."""
    channels = x.shape[1]
    mean = x.mean(dim=(2, 3, 4))
    chroma = F.normalize(mean - mean.mean(dim=1, keepdim=True), dim=1, eps=1e-6)
    gray = torch.full_like(chroma, channels**-0.5)
    shape = (x.shape[0], channels, 1, 1, 1)
    return gray.view(shape), chroma.view(shape)


def hue_plane_step(step: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-voxel moves [N, 2, ...] along (gray, x's mean chroma) -> [N, C, ...]; a gray input's
    voxels move along gray only."""
    gray, chroma = hue_plane_basis(x)
    return step[:, :1] * gray + step[:, 1:2] * chroma


def hue_plane_coords(v: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
    """Voxels [N, C, ...] -> [N, 2, ...]: each voxel's coordinates along gray and along the mean
    chroma of x, v itself by default (`hue_plane_basis`). rgby red, green and blue digits of one
    shape get the same coordinates (their channels are permutations of each other's), yellow ones
    a brighter gray: a potential read on them learns a shape once for every color."""
    gray, chroma = hue_plane_basis(v if x is None else x)
    return torch.cat(
        [(v * gray).sum(dim=1, keepdim=True), (v * chroma).sum(dim=1, keepdim=True)], 1
    )


def hue_plane_project(move: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Each voxel's move [N, C, ...] projected onto the hue plane of x: for maps whose move is
    not a network's head (a potential's gradient), the same restriction as `hue_plane_step`."""
    return hue_plane_step(hue_plane_coords(move, x), x)


class ColorBlind(nn.Module):
    """A potential read on `hue_plane_coords`: net(coords(x)), `net` built for 2 channels. A
    color-blind potential learns each shape once for all colors, and its gradient moves every
    voxel along gray and the input's own hue: a stroke it adds gets the input's color (where a
    potential on RGB drew new strokes in a dim tint near the palette's average)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    @staticmethod
    def applies(kind: str, channels: int, color_blind: bool) -> bool:
        """The one rule for when a `color_blind` setting wraps a potential: colored voxels only
        (vectors and one-channel grids have no hue plane)."""
        return color_blind and kind == "voxel" and channels > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(hue_plane_coords(x))


class UNet3D(nn.Module):
    """Transport map T for voxels: x [N, C, D, H, W] -> [N, out_channels, D, H, W].

    out_channels defaults to in_channels; `depth` is the number of down/up levels.
    `clamp` (e.g. (-1.0, 1.0), the data range) clips the output: background pushed below the
    range lands exactly on it instead of leaving a faint haze.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        base: int = 16,
        depth: int = 2,
        noise_channels: int = 0,
        residual: bool = True,
        norm: str = "group",
        activation: str = "silu",
        clamp: tuple[float, float] | None = None,
        cond_dim: int = 0,
        context: bool = False,
        hue_plane: bool = False,
    ) -> None:
        super().__init__()
        if clamp is not None and not clamp[0] < clamp[1]:
            raise NetConfigError(f"clamp {clamp}: expected (low, high) with low < high")
        out_channels = in_channels if out_channels is None else out_channels
        check_positive(in_channels=in_channels, out_channels=out_channels, base=base, depth=depth)
        check_count(noise_channels=noise_channels, cond_dim=cond_dim)
        if residual and out_channels != in_channels:
            raise NetConfigError(
                f"residual UNet3D needs out_channels == in_channels (got {out_channels} and "
                f"{in_channels}); pass residual=False for a map that changes the channel count"
            )
        if hue_plane and in_channels != out_channels:
            raise NetConfigError(
                f"hue_plane needs the same channels in and out (got {in_channels} -> "
                f"{out_channels}); build it with hue_plane=False"
            )
        check_norm(norm)
        make_activation(activation)  # fail here, not at the first forward

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.noise_channels = noise_channels
        self.depth = depth
        self.residual = residual
        self.clamp = clamp
        self.cond_dim = cond_dim
        self.context = context
        self.hue_plane = hue_plane

        widths = [base * 2**level for level in range(depth + 1)]
        self.stem = nn.Sequential(
            conv_norm_act(in_channels + noise_channels, widths[0], norm, activation),
            conv_norm_act(widths[0], widths[0], norm, activation),
        )
        self.downs = nn.ModuleList(
            nn.Sequential(
                conv_norm_act(widths[level], widths[level + 1], norm, activation, stride=2),
                conv_norm_act(widths[level + 1], widths[level + 1], norm, activation),
            )
            for level in range(depth)
        )
        # ups[level] takes level+1 features up to level; applied from the deepest level down.
        self.ups = nn.ModuleList(
            nn.Sequential(
                conv_norm_act(widths[level + 1] + widths[level], widths[level], norm, activation),
                conv_norm_act(widths[level], widths[level], norm, activation),
            )
            for level in range(depth)
        )
        self.head = nn.Conv3d(widths[0], 2 if hue_plane else out_channels, kernel_size=1)
        # one (scale, shift) pair per stage, in forward's order: stem, downs, ups (deepest first)
        film_in = cond_dim + (in_channels if context else 0)
        stages = [widths[0], *widths[1:], *reversed(widths[:-1])] if film_in else []
        self.films = nn.ModuleList(film_layer(film_in, w) for w in stages)
        if residual:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(
        self, x: torch.Tensor, z: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Map x (and, for a stochastic map, noise z [N, noise_channels, D, H, W]; for a
        conditioned one, cond [N, cond_dim]) to T(x[, z][, cond])."""
        check_voxels(x, self.in_channels, "UNet3D")
        films = iter(self._films(x, cond))
        grid = tuple(x.shape[2:])
        deepest = max_depth(grid)
        if self.depth > deepest:
            raise NetConfigError(
                f"UNet3D depth {self.depth} is too deep for a {'x'.join(map(str, grid))} grid: "
                f"max depth is {deepest} (each level halves the grid, the coarsest keeps >= 2 "
                f"voxels a side); build it with depth <= {deepest}"
            )
        if self.noise_channels:
            h = torch.cat([x, self._check_noise(x, z)], dim=1)
        elif z is not None:
            raise NetConfigError(
                "UNet3D got noise z but was built with noise_channels=0; "
                "drop z or build it with noise_channels > 0"
            )
        else:
            h = x

        h = next(films)(self.stem(h))
        skips = [h]
        for down in self.downs:
            h = next(films)(down(h))
            skips.append(h)
        skips.pop()  # the deepest features are h itself
        for level in reversed(range(self.depth)):
            skip = skips[level]
            h = F.interpolate(h, size=skip.shape[2:], mode="trilinear", align_corners=False)
            h = next(films)(self.ups[level](torch.cat([h, skip], dim=1)))
        out = self.head(h)
        if self.hue_plane:
            out = hue_plane_step(out, x)
        out = x + out if self.residual else out
        return out if self.clamp is None else out.clamp(*self.clamp)

    def _films(
        self, x: torch.Tensor, cond: torch.Tensor | None
    ) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """One feature transform per stage: FiLM from cond (and the input's per-channel mean
        with `context`), or the identity without either."""
        if not self.cond_dim and cond is not None:
            raise NetConfigError(
                "UNet3D got cond but was built with cond_dim=0; drop cond or build it "
                "with cond_dim > 0"
            )
        if not self.films:
            return [lambda h: h] * (1 + 2 * self.depth)
        if self.cond_dim and (cond is None or list(cond.shape) != [x.shape[0], self.cond_dim]):
            got = None if cond is None else list(cond.shape)
            raise NetConfigError(
                f"UNet3D was built with cond_dim={self.cond_dim} and needs cond of shape "
                f"{[x.shape[0], self.cond_dim]}, got {got}"
            )
        parts = [cond.to(dtype=x.dtype)] if self.cond_dim else []
        if self.context:
            parts.append(x.mean(dim=(2, 3, 4)))
        cond = torch.cat(parts, dim=1)
        return [film(layer, cond) for layer in self.films]

    def _check_noise(self, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """The noise must be given and match x's batch and grid."""
        expected = [x.shape[0], self.noise_channels, *x.shape[2:]]
        if z is None:
            raise NetConfigError(
                f"UNet3D was built with noise_channels={self.noise_channels} and needs noise z "
                f"of shape {expected}; pass z (e.g. 0.1 * torch.randn(...))"
            )
        if list(z.shape) != expected:
            raise NetConfigError(
                f"UNet3D noise z has shape {list(z.shape)}, expected {expected} "
                "(same batch and grid as x)"
            )
        return z.to(dtype=x.dtype)
