"""Voxel transforms: 2D->3D extrusion, rotations (1 and 3 degrees of freedom), coloring, and
the dominant-color read-out that the color-preservation metric relies on.

Shapes: volumes are [N, D, H, W] (intensity) or [N, C, D, H, W] (colored); D is the depth axis,
the one the 2D digits are extruded along. Everything here works in [0, 1] intensity space
except `dominant_color`, which takes the model-facing [-1, 1] scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

COLORINGS = ("rgby", "hue", "none")
COLOR_NAMES: dict[str, list[str]] = {
    "rgby": ["red", "yellow", "green", "blue"],
    "hue": ["red", "yellow", "green", "cyan", "blue", "magenta"],
    "none": ["gray"],
}
# rgby: which channel of each color carries the occupancy O (1) instead of the intensity V (0):
# red (O, V, V), yellow (O, O, V), green (V, O, V), blue (V, V, O).
RGBY_OCCUPANCY = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float32)
MIN_INTENSITY = 1.0 / 255.0  # below one gray level a voxel is empty (drops resampling dust)
HUE_BIN_MARGIN = 0.02  # hues stay this share of a bin away from its edges: labels are unambiguous
LIT_THRESHOLD = 0.15  # a voxel is lit when its brightest channel, in [0, 1], exceeds this
CHROMA_EPS = 1e-3  # a mean lit color closer than this to gray has no dominant color
VOXEL_CHROMA = 0.05  # a lit voxel closer than this to gray (rgby strokes at V ~ 1) has no hue
# an achromatic lit voxel whose darkest channel reaches this is white, as rgby stroke centres are
# (their darkest channel is >= 0.94); dimmer gray is in no real digit of any variant (every lit
# voxel of real data has brightness 1: its occupancy channels), so it counts as a wrong color
VOXEL_WHITE = 0.85


def palette(coloring: str) -> torch.Tensor:
    """Reference colors [K, C] in [0, 1] for the color labels of `coloring` (display and metric).

    rgby entries are the colors at intensity V = 0.5 (at V = 1 all four would be white).
    """
    if coloring == "rgby":
        return 1.0 - 0.5 * (1.0 - RGBY_OCCUPANCY)
    if coloring == "hue":
        return _pure_hue(torch.arange(6, dtype=torch.float32) / 6.0)
    if coloring == "none":
        return torch.ones(1, 1)
    raise ValueError(f"unknown coloring {coloring!r}; use one of {', '.join(COLORINGS)}")


def _pure_hue(h: torch.Tensor) -> torch.Tensor:
    """HSV -> RGB with S = V = 1 for hues h in [0, 1) (fractions of a turn): [N] -> [N, 3]."""
    n = torch.tensor([5.0, 3.0, 1.0], device=h.device)
    k = torch.remainder(n + h[:, None] * 6.0, 6.0)
    return 1.0 - torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)


def draw_colors(
    n: int, coloring: str, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's color, drawn once: labels [n] (int64) and hues [n] (fractions of a turn;
    used by "hue" only, zeros otherwise). Kept apart from `paint`, so a sample drawn again
    with a new rotation keeps its color."""
    if coloring == "none":
        return torch.zeros(n, dtype=torch.int64), torch.zeros(n)
    if coloring == "rgby":
        return torch.randint(0, 4, (n,), generator=generator), torch.zeros(n)
    if coloring == "hue":
        labels = torch.randint(0, 6, (n,), generator=generator)
        offset = (torch.rand(n, generator=generator) - 0.5) * (1.0 - 2.0 * HUE_BIN_MARGIN)
        return labels, torch.remainder((labels.float() + offset) / 6.0, 1.0)
    raise ValueError(f"unknown coloring {coloring!r}; use one of {', '.join(COLORINGS)}")


def paint(
    volumes: torch.Tensor, coloring: str, labels: torch.Tensor, hues: torch.Tensor
) -> torch.Tensor:
    """[N, D, H, W] intensities in [0, 1] -> [N, C, D, H, W] colored by `draw_colors`' labels.

    rgby: channels built from the occupancy O = (V > 0) and V; hue: the sample's hue with
    S = 1 and value V; none: one channel.
    """
    v = volumes.float().clamp(0.0, 1.0)
    v = torch.where(v < MIN_INTENSITY, torch.zeros_like(v), v)
    if coloring == "none":
        return v[:, None]
    if coloring == "rgby":
        occ_channel = RGBY_OCCUPANCY.to(v.device)[labels.to(v.device)][:, :, None, None, None]
        occupancy = (v > 0).float()[:, None]
        return occ_channel * occupancy + (1.0 - occ_channel) * v[:, None]
    if coloring == "hue":
        rgb = _pure_hue(hues.to(v.device).float())[:, :, None, None, None]
        return rgb * v[:, None]
    raise ValueError(f"unknown coloring {coloring!r}; use one of {', '.join(COLORINGS)}")


def colorize(
    volumes: torch.Tensor, coloring: str, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Give every sample one random color: [N, D, H, W] in [0, 1] -> ([N, C, D, H, W], labels [N]).

    rgby: color uniform from red/yellow/green/blue; hue: color bin uniform from 6 hues, hue
    uniform within the bin; none: one channel, label 0 (`draw_colors`, then `paint`).
    """
    labels, hues = draw_colors(volumes.shape[0], coloring, generator)
    return paint(volumes, coloring, labels, hues), labels


def unit_range(x: torch.Tensor) -> torch.Tensor:
    """Voxels in [-1, 1] -> [0, 1] as float, NaN as 0, clipped: the scale thresholds use."""
    return torch.nan_to_num((x.float() + 1.0) / 2.0, nan=0.0).clamp(0.0, 1.0)


def lit_voxels(u: torch.Tensor, threshold: float = LIT_THRESHOLD) -> torch.Tensor:
    """Bool [N, D, H, W]: voxels of `u` ([N, C, D, H, W] in [0, 1], see `unit_range`) whose
    brightest channel exceeds `threshold`."""
    return u.amax(dim=1) > threshold


def dominant_color(
    x: torch.Tensor, palette: torch.Tensor, threshold: float = LIT_THRESHOLD
) -> torch.Tensor:
    """Palette index of each sample's mean lit color: [N, C, D, H, W] in [-1, 1] -> int64 [N].

    Lit voxels are those whose brightest channel exceeds `threshold` in [0, 1] space, so a
    solver's faint background haze does not vote. The mean lit color and the palette are both
    centered (their gray part removed) and compared by cosine: what identifies a color is its
    direction around the gray axis, not its brightness (rgby red is (1, V, V) for any V).
    -1 (never equal to a real label) for a sample with no lit voxel or an achromatic mean;
    with one channel ("none"), every sample with a lit voxel gets label 0.
    """
    if x.dim() != 5 or palette.dim() != 2 or x.shape[1] != palette.shape[1]:
        raise ValueError(
            f"dominant_color needs x [N, C, D, H, W] and palette [K, C]; got {tuple(x.shape)} "
            f"and {tuple(palette.shape)}"
        )
    u = unit_range(x)
    lit = lit_voxels(u, threshold).float()  # [N, D, H, W]
    count = lit.sum(dim=(1, 2, 3))
    mean = (u * lit[:, None]).sum(dim=(2, 3, 4)) / count.clamp(min=1.0)[:, None]  # [N, C]
    none = torch.full_like(count, -1, dtype=torch.int64)
    if x.shape[1] == 1:
        return torch.where(count > 0, torch.zeros_like(none), none)
    return torch.where(count > 0, nearest_hue(mean, palette, CHROMA_EPS), none)


def nearest_hue(colors: torch.Tensor, palette: torch.Tensor, min_chroma: float) -> torch.Tensor:
    """Palette index of each color [..., C] (in [0, 1]) by hue: both sides centered (gray part
    removed) and compared by cosine; -1 where the color is closer than `min_chroma` to gray.
    (rgby red is (1, V, V) for any brightness V: only the direction around gray names it.)"""
    chroma = colors - colors.mean(dim=-1, keepdim=True)
    ref = palette.to(device=colors.device, dtype=torch.float32)
    ref = ref - ref.mean(dim=1, keepdim=True)
    labels = (F.normalize(chroma, dim=-1) @ F.normalize(ref, dim=1).T).argmax(dim=-1)
    return torch.where(chroma.norm(dim=-1) > min_chroma, labels, torch.full_like(labels, -1))


# ----------------------------------------------------------------------------- 2D -> 3D


def band(grid: int) -> tuple[int, int]:
    """Depth slices [start, stop) that hold the extruded digit: the middle half (4..11 of 16)."""
    return grid // 4, grid - grid // 4


def extrude(images: torch.Tensor, grid: int) -> torch.Tensor:
    """[N, h, w] in [0, 1] -> [N, G, G, G]: resize to G x G (antialiased) and copy the image
    into the middle band of depth slices, zeros elsewhere."""
    flat = F.interpolate(
        images.float()[:, None], size=(grid, grid), mode="bilinear", antialias=True
    ).clamp(0.0, 1.0)[:, 0]
    out = torch.zeros(images.shape[0], grid, grid, grid)
    start, stop = band(grid)
    out[:, start:stop] = flat[:, None]
    return out


def resample_volume(volumes: torch.Tensor, grid: int) -> torch.Tensor:
    """[N, D, H, W] -> [N, G, G, G]: area averaging when shrinking, trilinear when growing."""
    if tuple(volumes.shape[1:]) == (grid, grid, grid):
        return volumes.float()
    shrink = grid < min(volumes.shape[1:])
    mode = "area" if shrink else "trilinear"
    extra = {} if shrink else {"align_corners": False}
    out = F.interpolate(volumes.float()[:, None], size=(grid,) * 3, mode=mode, **extra)
    return out[:, 0].clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- rotations


def z_rotation_matrices(angles: torch.Tensor) -> torch.Tensor:
    """[N] angles in degrees -> [N, 3, 3] rotations about the depth axis, in (x=W, y=H, z=D), on
    the angles' device."""
    a = torch.deg2rad(angles.float())
    c, s = torch.cos(a), torch.sin(a)
    m = torch.zeros(len(a), 3, 3, device=a.device)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1], m[:, 2, 2] = c, -s, s, c, 1.0
    return m


def random_rotation_matrices(n: int, generator: torch.Generator) -> torch.Tensor:
    """n rotations [n, 3, 3] uniform on SO(3): normalized Gaussian quaternions are uniform."""
    q = torch.randn(n, 4, generator=generator)
    q = q / q.norm(dim=1, keepdim=True).clamp(min=1e-12)
    w, x, y, z = q.unbind(dim=1)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return torch.stack([torch.stack(r, dim=1) for r in rows], dim=1)


def rotate_volumes(volumes: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Rotate [N, D, H, W] or [N, C, D, H, W] volumes about their centers by [N, 3, 3]
    matrices acting on (x=W, y=H, z=D) voxel offsets (trilinear, zero fill)."""
    squeeze = volumes.dim() == 4
    v = volumes.float()[:, None] if squeeze else volumes.float()
    n, c, d, h, w = v.shape
    half = torch.tensor([w, h, d], dtype=torch.float32, device=v.device) / 2.0
    theta = torch.zeros(n, 3, 4, device=v.device)
    # Sampling maps output to input voxel offsets: R^-1 = R^T, in normalized coordinates.
    rt = matrices.to(v.device).float().transpose(1, 2)
    theta[:, :, :3] = rt * half[None, None, :] / half[None, :, None]
    grid = F.affine_grid(theta, [n, c, d, h, w], align_corners=False)
    out = F.grid_sample(v, grid, mode="bilinear", align_corners=False).clamp(0.0, 1.0)
    return out[:, 0] if squeeze else out


def rotate_slices(volumes: torch.Tensor, turns: torch.Tensor, plane: str = "HW") -> torch.Tensor:
    """Rotate [N, C, D, H, W] volumes within one plane through their centers, slice by slice by
    bicubic 2D interpolation (zero fill, no clamp): `turns` [N, 2, 2] act on the plane's
    (column, row) offsets, (x=W, y=H) for "HW" (a turn about the depth axis) and (x=W, z=D) for
    "DW" (about the height axis). Sharper than trilinear: 3-5 rotated about z, seed 1, real
    fives turned to their principal axes and back score fid 0.2 against trilinear's 7.0 (the
    split's floor 1.4)."""
    v = volumes.float() if plane == "HW" else volumes.float().transpose(2, 3)  # [N, C, S, R, K]
    n, c, s, rows, cols = v.shape
    theta = torch.zeros(n, 2, 3, device=v.device)
    theta[:, :, :2] = turns.to(v.device).float().transpose(1, 2)
    theta[:, 0, 1] *= rows / cols  # normalized coordinates per axis, as in `rotate_volumes`
    theta[:, 1, 0] *= cols / rows
    flat = v.transpose(1, 2).reshape(n * s, c, rows, cols)
    grid = F.affine_grid(theta.repeat_interleave(s, dim=0), list(flat.shape), align_corners=False)
    out = F.grid_sample(flat, grid, mode="bicubic", align_corners=False)
    out = out.reshape(n, s, c, rows, cols).transpose(1, 2)
    return out if plane == "HW" else out.transpose(2, 3)


def random_angles(n: int, generator: torch.Generator) -> torch.Tensor:
    """n angles uniform in [0, 360) degrees."""
    return torch.rand(n, generator=generator) * 360.0


def _unknown_rotation(kind: str) -> ValueError:
    """The one error for a rotation kind that is not one of `DataConfig`'s."""
    return ValueError(f"unknown rotation {kind!r}; use none, z or 3d")


def random_rotations(kind: str, n: int, generator: torch.Generator) -> torch.Tensor | None:
    """n random rotation matrices [n, 3, 3] of a `DataConfig.rotation` kind ("z": about the
    depth axis, "3d": uniform on SO(3)); None for "none"."""
    if kind == "none":
        return None
    if kind == "z":
        return z_rotation_matrices(random_angles(n, generator))
    if kind == "3d":
        return random_rotation_matrices(n, generator)
    raise _unknown_rotation(kind)


Turns = tuple[int, int, int]  # quarter turns in the (D, H), (D, W) and (H, W) planes, in order


def quarter_turns(kind: str) -> tuple[Turns, ...]:
    """The quarter-turn rotations of the grid that a `DataConfig.rotation` kind's distribution
    is invariant to, the identity first: four about the depth axis for "z" (uniform angles),
    the cube's 24 for "3d" (uniform on SO(3)), only the identity for "none". Exact on any grid
    (no resampling): a classifier averaged over them sees each sample as the data could have
    drawn it."""
    if kind == "none":
        return ((0, 0, 0),)
    if kind == "z":
        return tuple((0, 0, k) for k in range(4))
    if kind == "3d":
        probe = torch.arange(27).view(1, 1, 3, 3, 3)
        seen: dict[tuple[int, ...], Turns] = {}
        for turns in ((a, b, c) for a in range(4) for b in range(4) for c in range(4)):
            seen.setdefault(tuple(turn(probe, turns).flatten().tolist()), turns)
        return tuple(sorted(seen.values()))
    raise _unknown_rotation(kind)


def turn(x: torch.Tensor, turns: Turns) -> torch.Tensor:
    """[N, C, D, H, W] turned by quarter turns (see `quarter_turns`) about the grid's center."""
    for k, dims in zip(turns, ((2, 3), (2, 4), (3, 4)), strict=True):
        if k % 4:
            x = torch.rot90(x, k, dims=dims)
    return x


def color_mixed(volumes: torch.Tensor) -> torch.Tensor:
    """[N, C, D, H, W] (C >= 2, any value range) -> the same samples with the channels of one
    side of a random cut rotated by a random nonzero shift, so each sample shows two colors
    where it showed one. The cut is across a random axis where a random 25-75% of the sample's
    mass (above its darkest value) lies before it, so both colors are seen; which side is
    recolored is random. Used as negatives for a potential: a digit has one color, and a
    potential trained only against a map's outputs does not learn that (measured, docs/results.md,
    "Two-colored negatives"). Uses torch's global RNG."""
    if volumes.dim() != 5 or volumes.shape[1] < 2:
        raise ValueError(f"color_mixed: needs [N, C>=2, D, H, W]; got {tuple(volumes.shape)}")
    n, c = volumes.shape[:2]
    dev = volumes.device
    mass = (volumes - volumes.flatten(1).amin(1).view(n, 1, 1, 1, 1)).sum(1)  # [N, D, H, W]
    axis = torch.randint(0, 3, (n,), device=dev)
    frac = 0.25 + 0.5 * torch.rand(n, 1, device=dev)
    side = torch.randint(0, 2, (n, 1, 1, 1), device=dev).bool()
    mask = torch.zeros_like(mass, dtype=torch.bool)
    for a in range(3):
        profile = mass.sum(dim=[d for d in (1, 2, 3) if d != a + 1])  # [N, size of axis a]
        cdf = profile.cumsum(1) / profile.sum(1, keepdim=True).clamp(min=1e-12)
        cut = (cdf < frac).sum(1)  # slices before the cut hold < frac of the mass
        shape = [1, 1, 1, 1]
        shape[a + 1] = -1
        before = torch.arange(mass.shape[a + 1], device=dev).view(shape) < cut.view(n, 1, 1, 1)
        mask = torch.where((axis == a).view(n, 1, 1, 1), before, mask)
    shift = torch.randint(1, c, (n, 1), device=dev)
    channels = (torch.arange(c, device=dev).view(1, c) + shift) % c
    rotated = volumes.gather(1, channels.view(n, c, 1, 1, 1).expand_as(volumes))
    return torch.where((mask ^ side)[:, None], rotated, volumes)


# ----------------------------------------------------------------------------- point clouds

# Points per digit: ~4 per lit voxel of a 16^3 extruded digit, so counts read as a density
# with visible sampling noise, like the Kaggle 3D MNIST voxels.
POINTS_PER_DIGIT = 2048
POINT_JITTER = 0.15  # std of the Gaussian noise added to every point, in voxels


def sample_points(
    volumes: torch.Tensor, n_points: int, generator: torch.Generator, jitter: float = POINT_JITTER
) -> torch.Tensor:
    """Point clouds [N, P, 3] in voxel coordinates (x=W, y=H, z=D; a voxel spans [i, i + 1))
    drawn from intensity volumes [N, D, H, W]: voxels with probability proportional to their
    intensity, uniform within the voxel, plus Gaussian jitter. Random numbers come from the
    CPU `generator` and move to the volumes' device, so a draw is the same on every device."""
    n, d, h, w = volumes.shape
    device = volumes.device
    mass = volumes.float().clamp(min=0.0).flatten(1)
    cdf = torch.cumsum(mass, dim=1)
    total = cdf[:, -1:].clamp(min=1e-12)
    u = torch.rand(n, n_points, generator=generator).to(device)
    idx = torch.searchsorted(cdf / total, u).clamp(max=d * h * w - 1)
    within = torch.rand(n, n_points, 3, generator=generator).to(device)
    noise = torch.randn(n, n_points, 3, generator=generator).to(device) * jitter
    x, y, z = idx % w, (idx // w) % h, idx // (w * h)
    return torch.stack([x, y, z], dim=-1).float() + within + noise


def rotate_points(points: torch.Tensor, matrices: torch.Tensor, grid: int) -> torch.Tensor:
    """Rotate point clouds [N, P, 3] (voxel coordinates) about the grid's center by [N, 3, 3]
    matrices, the same convention as `rotate_volumes`."""
    center = grid / 2.0
    rot = matrices.to(points.device).float()
    return torch.einsum("nij,npj->npi", rot, points - center) + center


def voxelize_points(points: torch.Tensor, grid: int) -> torch.Tensor:
    """Point clouds [N, P, 3] -> [N, G, G, G] (D, H, W) point counts per voxel, divided by each
    sample's largest count (densest voxel 1); points outside the grid are dropped."""
    n = points.shape[0]
    cell = torch.floor(points).long()
    inside = ((cell >= 0) & (cell < grid)).all(dim=-1)
    x, y, z = cell.unbind(dim=-1)
    flat = ((z * grid + y) * grid + x).clamp(0, grid**3 - 1)
    flat = flat + torch.arange(n, device=points.device)[:, None] * grid**3
    counts = torch.zeros(n * grid**3, device=points.device)
    counts.index_add_(0, flat[inside], torch.ones_like(flat[inside], dtype=torch.float32))
    counts = counts.view(n, grid, grid, grid)
    return counts / counts.flatten(1).amax(dim=1).clamp(min=1.0)[:, None, None, None]
