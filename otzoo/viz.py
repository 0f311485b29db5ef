"""Voxel pictures for PNG reports and TensorBoard images.

The renderer is a tiny volume ray caster in pure torch, because it runs every few hundred
training steps on CPU: matplotlib's 3D `voxels` takes seconds per volume. Each volume is turned
to an oblique view (trilinear `grid_sample`), then composited front to back along the viewing
axis, with opacity from voxel intensity (lit voxels opaque, background transparent), Lambert
shading from the opacity gradient and a little depth fog so the extrusion reads as 3D.
matplotlib is used only to rasterize text labels and to write PNG files.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from otzoo.errors import DataError
from otzoo.runtime import atomic_write_bytes

View = tuple[float, float]  # (yaw, pitch) in degrees
OBLIQUE: View = (-25.0, -20.0)  # turn about the vertical axis, tilt: left side and top faces
# Rotated digits can be edge-on from any one side: three views (oblique, from the side, from
# above) let a reader tell a 5 from a 3 whatever the rotation.
THREE_VIEWS: tuple[View, ...] = (OBLIQUE, (65.0, -20.0), (-25.0, -80.0))


def views_for(rotation: str, style: str = "extruded") -> tuple[View, ...]:
    """The views that make digits of this data readable: one for unrotated extruded digits
    (lifted along the depth axis, seen obliquely from the front), three for rotated ones and
    for point clouds (sparse and noisy: a second and third view show the stroke)."""
    return (OBLIQUE,) if rotation == "none" and style == "extruded" else THREE_VIEWS


_GRAY_TINT = (0.22, 0.42, 0.78)  # colour given to 1-channel volumes (white would vanish on white)
_LIGHT = (-0.45, -0.65, -1.0)  # towards the light, view coords (x right, y down, z away)
_AMBIENT, _DIFFUSE, _FOG = 0.3, 0.7, 0.3
_CHUNK = 8  # volumes composited at once, bounds memory for 32^3 batches
_GAP_FRACTION = 24  # gap between tiles = size // _GAP_FRACTION pixels


def _rotation(view: View) -> torch.Tensor:
    """Rotation taking view coordinates to volume coordinates (x=W, y=H, z=D order)."""
    a, b = math.radians(view[0]), math.radians(view[1])
    ry = torch.tensor(
        [[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]]
    )
    rx = torch.tensor(
        [[1.0, 0.0, 0.0], [0.0, math.cos(b), -math.sin(b)], [0.0, math.sin(b), math.cos(b)]]
    )
    return ry @ rx


def _view_theta(dhw: tuple[int, int, int], view: View) -> tuple[torch.Tensor, float, float]:
    """Affine map for `affine_grid` that frames the whole rotated box tightly.

    Returns theta [3, 4] and the half-extents (in units of the longest side) of the frame in the
    picture plane and along the viewing axis.
    """
    d, h, w = dhw
    g = max(dhw)
    half = torch.tensor([w / g, h / g, d / g])  # physical half-sizes, x/y/z order
    rot = _rotation(view)
    # extent of the box along each view axis i: sum_j |R_ji| * half_j
    ext = (rot.abs() * half[:, None]).sum(0)
    s_xy, s_z = float(max(ext[0], ext[1])), float(ext[2])
    theta = torch.diag(1.0 / half) @ rot @ torch.diag(torch.tensor([s_xy, s_xy, s_z]))
    return torch.cat([theta, torch.zeros(3, 1)], dim=1), s_xy, s_z


def _check_volumes(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 5 or x.shape[1] not in (1, 3):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise DataError(
            f"cannot render {shape}: expected voxels [N, C, D, H, W] with C = 1 or 3; "
            "add the batch dimension with x.unsqueeze(0) or reshape flat vectors first"
        )
    x = torch.nan_to_num(x.detach().to("cpu", torch.float32), nan=-1.0, posinf=1.0, neginf=-1.0)
    return x.clamp(-1.0, 1.0)


@functools.lru_cache(maxsize=16)
def _sampling_grid(dhw: tuple[int, int, int], res: int, depth: int, view: View) -> torch.Tensor:
    """Sample positions of all rays, [1, depth, res, res, 3]; the same for every volume."""
    theta, _, _ = _view_theta(dhw, view)
    return F.affine_grid(theta[None], [1, 1, depth, res, res], align_corners=False)


def _composite(vol: torch.Tensor, res: int, depth: int, step: float, view: View) -> torch.Tensor:
    """Ray-cast a chunk of [n, C, D, H, W] volumes in [0, 1]; returns RGB [n, 3, res, res]."""
    n, c = vol.shape[:2]
    intensity = vol.amax(dim=1, keepdim=True)
    # colours are interpolated premultiplied by intensity (see the division below)
    color = torch.tensor(_GRAY_TINT).view(1, 3, 1, 1, 1) * intensity if c == 1 else vol
    grid = _sampling_grid(tuple(vol.shape[2:]), res, depth, view).expand(n, -1, -1, -1, -1)
    sampled = F.grid_sample(
        torch.cat([intensity, color], 1), grid, mode="bilinear", align_corners=False
    )
    inten = sampled[:, :1]
    # the background is colour 0, so interpolation darkens edges; divide it back out
    rgb = (sampled[:, 1:] / inten.clamp(min=1e-3)).clamp(0.0, 1.0)
    # opacity per voxel length: dim voxels stay see-through, lit voxels are solid
    alpha_vox = (inten * 2.0).clamp(0.0, 0.97)
    alpha = 1.0 - (1.0 - alpha_vox) ** step
    # Lambert shading with the outward normal = -grad(opacity)
    gz, gy, gx = torch.gradient(alpha_vox[:, 0], dim=(1, 2, 3))
    lx, ly, lz = (comp / math.sqrt(sum(v * v for v in _LIGHT)) for comp in _LIGHT)
    facing = -(gx * lx + gy * ly + gz * lz) / ((gx * gx + gy * gy + gz * gz).sqrt() + 1e-3)
    shade = _AMBIENT + _DIFFUSE * facing.clamp(min=0.0).unsqueeze(1)
    fog = 1.0 - _FOG * torch.linspace(0.0, 1.0, depth).view(1, 1, depth, 1, 1)
    lit = rgb * shade * fog
    trans = torch.cumprod(1.0 - alpha, dim=2)
    before = torch.cat([torch.ones_like(trans[:, :, :1]), trans[:, :, :-1]], dim=2)
    picture = (before * alpha * lit).sum(dim=2) + trans[:, :, -1]  # white behind
    return picture.clamp(0.0, 1.0)


def render_volumes(
    x: torch.Tensor, size: int = 96, views: tuple[View, ...] = (OBLIQUE,)
) -> np.ndarray:
    """Render each volume of [N, C, D, H, W] (values in [-1, 1]) as 3D pictures, one per view,
    side by side.

    Returns uint8 [N, size, size * len(views), 3] on a white background. NaN voxels (a diverged
    map) are drawn as background so a report still renders.
    """
    if size < 8:
        raise ValueError(f"render size {size} is too small; use size >= 8")
    x = _check_volumes(x)
    n = x.shape[0]
    if n == 0:
        return np.zeros((0, size, size * len(views), 3), dtype=np.uint8)
    dhw = tuple(int(s) for s in x.shape[2:])
    g = max(dhw)
    vol = (x + 1.0) * 0.5
    pictures = []
    for view in views:
        _, s_xy, s_z = _view_theta(dhw, view)
        res = min(size, math.ceil(2 * g * s_xy))  # about two rays per voxel, never above `size`
        depth = math.ceil(2 * g * s_z)  # about two samples per voxel along the ray
        step = g * s_z / depth  # sample spacing in voxel lengths
        with torch.no_grad():
            chunks = range(0, n, _CHUNK)
            pic = torch.cat(
                [_composite(vol[i : i + _CHUNK], res, depth, step, view) for i in chunks]
            )
            if res != size:
                pic = F.interpolate(pic, size=(size, size), mode="bilinear", align_corners=False)
        pictures.append(pic)
    pic = (torch.cat(pictures, dim=3).clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return pic.permute(0, 2, 3, 1).contiguous().numpy()


def _font_size(size: int) -> float:
    return float(min(14, max(8, size // 8)))


def _text_image(
    texts: Sequence[tuple[str, float]], width: int, height: int, fontsize: float, x: float
) -> np.ndarray:
    """Rasterize (text, y-centre in px) pairs, left-aligned at x px, on white; uint8 [h, w, 3]."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    for text, y in texts:
        fig.text(
            x / width,
            1 - y / height,
            text,
            ha="left",
            va="center",
            fontsize=fontsize,
            parse_math=False,
        )
    canvas.draw()
    img = np.asarray(canvas.buffer_rgba())[..., :3]
    out = np.full((height, width, 3), 255, dtype=np.uint8)
    hh, ww = min(height, img.shape[0]), min(width, img.shape[1])
    out[:hh, :ww] = img[:hh, :ww]
    return out


def _text_width(texts: Sequence[str], fontsize: float) -> int:
    """Widest line of `texts` (labels may hold several lines) in pixels at 100 dpi."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer = RendererAgg(8, 8, 100)
    prop = FontProperties(size=fontsize)
    lines = [line for t in texts for line in t.splitlines() or [""]]
    widths = [renderer.get_text_width_height_descent(t, prop, ismath=False)[0] for t in lines]
    return math.ceil(max(widths, default=0.0))


def render_grid(
    rows: list[torch.Tensor],
    row_labels: list[str] | None = None,
    size: int = 96,
    views: tuple[View, ...] = (OBLIQUE,),
) -> np.ndarray:
    """Stack rendered batches as rows of one picture, white gaps, optional labels at the left.

    Each row is a batch [n_i, C, D, H, W]; each sample is drawn from every view of `views`, side
    by side; shorter rows are padded with white. Returns uint8 [H, W, 3], ready for `save_png`
    or TensorBoard's `add_image(..., dataformats="HWC")`.
    """
    if not rows:
        raise ValueError("render_grid needs at least one row of volumes")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"got {len(row_labels)} row labels for {len(rows)} rows; pass one each")
    tiles = [render_volumes(r, size, views) for r in rows]
    gap = max(2, size // _GAP_FRACTION)
    tile_w = size * len(views)
    cols = max(1, max(t.shape[0] for t in tiles))
    width = cols * tile_w + (cols + 1) * gap
    height = len(tiles) * size + (len(tiles) + 1) * gap
    grid = np.full((height, width, 3), 255, dtype=np.uint8)
    for r, tile in enumerate(tiles):
        y = gap + r * (size + gap)
        for c in range(tile.shape[0]):
            x = gap + c * (tile_w + gap)
            grid[y : y + size, x : x + tile_w] = tile[c]
    if row_labels:
        fontsize = _font_size(size)
        pad = 2 * gap
        label_w = min(400, _text_width(row_labels, fontsize) + 2 * pad)
        centres = [gap + r * (size + gap) + size / 2 for r in range(len(rows))]
        texts = list(zip(row_labels, centres, strict=True))
        strip = _text_image(texts, label_w, height, fontsize, pad)
        grid = np.concatenate([strip, grid], axis=1)
    return grid


TITLE_SEPARATOR = "  |  "


def _wrap_title(title: str, width: float, fontsize: float) -> list[str]:
    """Lines of `title` no wider than `width` px where it can: breaks at its `TITLE_SEPARATOR`s
    (a picture of a few columns is narrower than its title, and the end was cut off)."""
    lines: list[str] = []
    for part in title.split(TITLE_SEPARATOR):
        joined = lines[-1] + TITLE_SEPARATOR + part if lines else part
        if lines and _text_width([joined], fontsize) <= width:
            lines[-1] = joined
        else:
            lines.append(part)
    return lines


def _add_title(image: np.ndarray, title: str, size: int) -> np.ndarray:
    fontsize = _font_size(size) + 1
    pad = max(2, size // _GAP_FRACTION)
    lines = _wrap_title(title, image.shape[1] - 2 * pad, fontsize)
    line_h = fontsize * 1.9  # points at 100 dpi: 1.39 px each, and a gap
    strip_h = math.ceil(fontsize * 2.2 + line_h * (len(lines) - 1))
    texts = [(line, fontsize * 1.1 + i * line_h) for i, line in enumerate(lines)]
    strip = _text_image(texts, image.shape[1], strip_h, fontsize, pad)
    return np.concatenate([strip, image], axis=0)


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 [H, W, 3] (or [H, W]) image to `path` atomically; returns the path.

    Written through `runtime.atomic_write_bytes` (temp file, fsync, rename, the user's umask),
    so a reader (a browser on the report) never sees a half-written PNG.
    """
    from matplotlib.image import imsave

    image = np.asarray(image)
    if (
        image.dtype != np.uint8
        or image.ndim not in (2, 3)
        or image.ndim == 3
        and (image.shape[2] not in (3, 4))
    ):
        raise ValueError(
            f"save_png wants uint8 [H, W], [H, W, 3] or [H, W, 4], got {image.dtype} "
            f"{image.shape}; use render_volumes/render_grid output"
        )
    buf = io.BytesIO()
    if image.ndim == 2:
        imsave(buf, image, format="png", cmap="gray", vmin=0, vmax=255)
    else:
        imsave(buf, image, format="png")
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def save_grid_png(
    rows: list[torch.Tensor],
    path: str | Path,
    row_labels: list[str] | None = None,
    title: str | None = None,
    size: int = 96,
    views: tuple[View, ...] = (OBLIQUE,),
) -> Path:
    """Render `rows` with `render_grid`, add an optional title, and save atomically as PNG."""
    image = render_grid(rows, row_labels=row_labels, size=size, views=views)
    if title:
        image = _add_title(image, title, size)
    return save_png(image, path)


def save_scatter_png(
    x: torch.Tensor,
    y: torch.Tensor,
    path: str | Path,
    mapped: torch.Tensor | None = None,
    title: str | None = None,
    arrows: int = 64,
) -> Path:
    """Vector data: the first two coordinates of source and target samples, with arrows from
    the first `arrows` sources to `mapped` (e.g. the true map) when given; saved atomically."""
    from matplotlib.figure import Figure

    if x.dim() != 2 or y.dim() != 2 or x.shape[1] < 1 or x.shape[1] != y.shape[1]:
        raise DataError(
            f"cannot scatter {tuple(x.shape)} and {tuple(y.shape)}: expected flat vectors "
            "[N, d] of one dimension; use save_grid_png for voxels"
        )
    x, y = x.detach().double().cpu(), y.detach().double().cpu()
    one_d = x.shape[1] == 1
    if one_d:  # a line: spread the points vertically so both sets are visible
        x, y = (torch.cat([t, torch.zeros_like(t)], dim=1) for t in (x, y))
    fig = Figure(figsize=(5, 5), dpi=100)
    ax = fig.add_subplot()
    ax.scatter(x[:, 0], x[:, 1], s=4, alpha=0.5, label="source P")
    ax.scatter(y[:, 0], y[:, 1], s=4, alpha=0.5, label="target Q")
    if mapped is not None:
        m = mapped.detach().double().cpu()[:arrows]
        m = torch.cat([m, torch.zeros_like(m)], dim=1) if m.shape[1] == 1 else m
        for a, b in zip(x[: len(m)], m, strict=True):
            ax.annotate(
                "",
                xy=(b[0], b[1]),
                xytext=(a[0], a[1]),
                arrowprops={"arrowstyle": "->", "lw": 0.5, "alpha": 0.6},
            )
    ax.set_xlabel("x[0]")
    ax.set_ylabel("" if one_d else "x[1]")
    ax.legend(loc="best", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure_png(fig, path)


def save_figure_png(fig: Any, path: str | Path) -> Path:
    """Rasterize a matplotlib Figure (Agg, no pyplot state) and save it atomically as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return save_png(np.asarray(canvas.buffer_rgba())[..., :3].copy(), path)


def save_loss_png(
    curves: dict[str, dict[str, list[tuple[int, float]]]], path: str | Path, title: str = ""
) -> Path:
    """Training losses over outer steps: one panel per solver (its own objective names, its own
    scale), one line per loss; `curves` is {solver: {loss name: [(step, value), ...]}}."""
    from matplotlib.figure import Figure

    names = [n for n, c in curves.items() if c]
    if not names:
        raise ValueError("save_loss_png: no loss curves to draw")
    fig = Figure(figsize=(5.0 * len(names), 3.4), dpi=100)
    for i, name in enumerate(names, start=1):
        ax = fig.add_subplot(1, len(names), i)
        for loss, points in curves[name].items():
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, lw=1.0, marker="o" if len(steps) < 3 else None, label=loss)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("outer step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure_png(fig, path)
