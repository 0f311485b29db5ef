"""Voxel renders: shapes, white background, colours, speed, and atomic PNG writing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from otzoo.errors import DataError
from otzoo.viz import render_grid, render_volumes, save_grid_png, save_png, save_scatter_png


def _empty(n: int = 1, c: int = 3, g: int = 8) -> torch.Tensor:
    return -torch.ones(n, c, g, g, g)


def _cube(rgb: tuple[float, float, float], g: int = 16) -> torch.Tensor:
    """A solid cube filling the middle half of the grid, in [-1, 1]."""
    x = _empty(1, 3, g)
    lo, hi = g // 4, 3 * g // 4
    for ch, value in enumerate(rgb):
        x[0, ch, lo:hi, lo:hi, lo:hi] = 2.0 * value - 1.0
    return x


def test_render_shape_dtype_and_white_background():
    pics = render_volumes(_empty(n=2, c=3, g=8), size=40)
    assert pics.shape == (2, 40, 40, 3)
    assert pics.dtype == np.uint8
    assert (pics == 255).all()  # nothing lit: pure white


def test_gray_volumes_render_to_rgb():
    x = _empty(n=3, c=1, g=16)
    x[:, :, 6:10, 6:10, 6:10] = 1.0
    pics = render_volumes(x, size=32)
    assert pics.shape == (3, 32, 32, 3)
    assert (pics[:, 0, 0] == 255).all()  # corner stays background
    assert pics.min() < 200  # the lit block is drawn, not white on white


def test_a_single_lit_voxel_changes_the_picture():
    x = _empty(n=1, c=3, g=8)
    before = render_volumes(x, size=48)
    x[0, :, 4, 4, 4] = 1.0
    after = render_volumes(x, size=48)
    changed = (before != after).any(axis=-1)
    assert changed.any()
    assert changed.mean() < 0.2  # a single voxel, not the whole picture


@pytest.mark.parametrize(
    ("rgb", "channel"), [((1.0, 0.0, 0.0), 0), ((0.0, 1.0, 0.0), 1), ((0.0, 0.0, 1.0), 2)]
)
def test_colors_come_out_right(rgb, channel):
    pic = render_volumes(_cube(rgb), size=48)[0].astype(int)
    centre = pic[18:30, 18:30].reshape(-1, 3).mean(0)
    others = [c for c in range(3) if c != channel]
    assert centre[channel] > 100
    assert all(centre[channel] > centre[o] + 80 for o in others)


def test_values_outside_range_and_nan_do_not_break_rendering():
    x = _cube((1.0, 0.0, 0.0)) * 3.0
    x[0, 0, 0, 0, 0] = float("nan")
    pic = render_volumes(x, size=32)
    assert pic.shape == (1, 32, 32, 3)
    assert (pic[0, 0, 0] == 255).all()


def test_render_rejects_wrong_shapes_with_a_clear_error():
    with pytest.raises(DataError, match=r"\[N, C, D, H, W\]"):
        render_volumes(torch.zeros(3, 8, 8, 8))
    with pytest.raises(DataError, match="C = 1 or 3"):
        render_volumes(torch.zeros(1, 2, 8, 8, 8))


def test_render_reuses_its_sampling_grid():
    """What keeps rendering cheap enough to run during training (~0.13 s for 10 volumes at
    16^3 on one core): the ray positions are built once per grid and picture size, then
    reused. (A wall-clock bound would be flaky on a shared 2-core runner.)"""
    from otzoo.viz import _sampling_grid

    _sampling_grid.cache_clear()
    x = (torch.rand(10, 3, 16, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.8) * 2.0 - 1
    first = render_volumes(x)  # two chunks of at most 8 volumes: built once, reused once
    assert (_sampling_grid.cache_info().misses, _sampling_grid.cache_info().hits) == (1, 1)
    again = render_volumes(x)
    info = _sampling_grid.cache_info()
    assert (info.misses, info.hits) == (1, 3) and np.array_equal(first, again)


def test_render_grid_layout_pads_short_rows_with_white():
    size = 32
    rows = [_cube((1.0, 0.0, 0.0)).repeat(3, 1, 1, 1, 1), _cube((0.0, 0.0, 1.0))]
    grid = render_grid(rows, size=size)
    gap = 2
    assert grid.shape == (2 * size + 3 * gap, 3 * size + 4 * gap, 3)
    assert grid.dtype == np.uint8
    assert (grid[:gap] == 255).all() and (grid[:, :gap] == 255).all()  # white margins
    second_row = grid[size + 2 * gap : 2 * size + 2 * gap]
    assert (second_row[:, size + 2 * gap :] == 255).all()  # missing tiles are white
    assert (second_row[:, gap : gap + size] != 255).any()  # the one tile is drawn


def test_render_grid_labels_add_a_text_column():
    rows = [_cube((1.0, 0.0, 0.0)), _cube((0.0, 1.0, 0.0))]
    plain = render_grid(rows, size=32)
    labelled = render_grid(rows, row_labels=["source $x$", "T(x)"], size=32)
    assert labelled.shape[0] == plain.shape[0]
    extra = labelled.shape[1] - plain.shape[1]
    assert extra > 10
    assert (labelled[:, :extra] < 128).any()  # some dark text pixels
    np.testing.assert_array_equal(labelled[:, extra:], plain)
    with pytest.raises(ValueError, match="row labels"):
        render_grid(rows, row_labels=["only one"], size=32)


def test_save_png_roundtrip_atomic_and_creates_dirs(tmp_path):
    image = np.zeros((10, 12, 3), dtype=np.uint8)
    image[2:5, 3:7] = (255, 0, 0)
    path = save_png(image, tmp_path / "a" / "b" / "pic.png")
    assert path.exists()
    back = imread(path)
    assert back.shape[:2] == (10, 12)
    np.testing.assert_allclose(back[..., :3], image / 255.0, atol=1e-6)
    assert sorted(p.name for p in path.parent.iterdir()) == ["pic.png"]  # no temp file left
    save_png(np.full((4, 4, 3), 7, dtype=np.uint8), path)  # overwrite in place
    assert imread(path).shape[:2] == (4, 4)
    assert sorted(p.name for p in path.parent.iterdir()) == ["pic.png"]


def test_save_png_rejects_non_images_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        save_png(np.zeros((4, 4, 3), dtype=np.float32), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_save_grid_png_with_title(tmp_path):
    rows = [_cube((1.0, 1.0, 0.0))]
    no_title = render_grid(rows, row_labels=["yellow"], size=32)
    path = save_grid_png(
        rows, tmp_path / "grid.png", row_labels=["yellow"], title="a title", size=32
    )
    back = imread(path)
    assert back.shape[1] == no_title.shape[1]
    assert back.shape[0] > no_title.shape[0]  # title strip on top


def test_a_title_wider_than_the_picture_wraps_at_its_separators():
    """A one-column picture is narrower than compare's title; its end (the seed) was cut off."""
    from otzoo.viz import _add_title, _text_width, _wrap_title

    parts = ["3-5: embedded 16^3, rgby, rotation none, extruded", "quick, 760-1150 steps", "seed 0"]
    title = "  |  ".join(parts)
    assert _wrap_title(title, 10_000, 10) == [title]
    narrow = _wrap_title(title, _text_width([parts[0]], 10) + 1, 10)
    assert narrow == [parts[0], "  |  ".join(parts[1:])]
    image = np.full((40, 300, 3), 255, dtype=np.uint8)
    one_line = _add_title(image, "seed 0", 32)
    wrapped = _add_title(image, title, 32)
    assert wrapped.shape[0] > one_line.shape[0] and wrapped.shape[1] == 300
    # every line is drawn: dark pixels in each line's band of the strip
    strip = wrapped[: wrapped.shape[0] - 40].min(axis=2)
    rows_with_ink = np.flatnonzero((strip < 128).any(axis=1))
    assert len(rows_with_ink) > 0 and np.diff(rows_with_ink).max() > 1  # separate bands


def test_scatter_refuses_voxels_and_handles_one_dimension(tmp_path):
    with pytest.raises(DataError, match="flat vectors"):
        save_scatter_png(torch.zeros(4, 3, 8, 8, 8), torch.zeros(4, 3, 8, 8, 8), tmp_path / "a.png")
    x = torch.randn(50, 1)
    path = save_scatter_png(x, x + 3, tmp_path / "line.png", mapped=x + 3)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_several_views_side_by_side():
    from otzoo.viz import THREE_VIEWS, views_for

    x = _cube((1.0, 0.0, 0.0))
    x[0, :, 4:12, 4:6, 4:12] = 1.0  # an asymmetric shape: each view differs
    one = render_volumes(x, size=32)
    three = render_volumes(x, size=32, views=THREE_VIEWS)
    assert one.shape == (1, 32, 32, 3) and three.shape == (1, 32, 96, 3)
    np.testing.assert_array_equal(three[:, :, :32], one)  # the first view is the usual one
    assert not np.array_equal(three[:, :, 32:64], three[:, :, 64:])
    grid = render_grid([x, x], size=32, views=THREE_VIEWS)
    assert grid.shape[1] > 3 * 32
    assert views_for("none") == THREE_VIEWS[:1] and views_for("z") == THREE_VIEWS
    assert views_for("none", "pointcloud") == THREE_VIEWS
