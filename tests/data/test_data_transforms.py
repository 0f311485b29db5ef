"""Voxel transforms: extrusion, rotations, coloring, and the dominant-color read-out."""

from __future__ import annotations

import pytest
import torch

from otzoo.data import DataConfig, colorize, dominant_color, load_digit_set, palette
from otzoo.data.transforms import (
    COLOR_NAMES,
    VOXEL_CHROMA,
    band,
    color_mixed,
    draw_colors,
    extrude,
    lit_voxels,
    nearest_hue,
    paint,
    quarter_turns,
    random_rotation_matrices,
    random_rotations,
    resample_volume,
    rotate_points,
    rotate_volumes,
    sample_points,
    turn,
    unit_range,
    voxelize_points,
    z_rotation_matrices,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_band_is_middle_half() -> None:
    assert band(16) == (4, 12)  # slices 4..11
    assert band(8) == (2, 6)
    assert band(32) == (8, 24)


def test_extrude_copies_resized_image_into_band() -> None:
    img = torch.zeros(2, 28, 28)
    img[:, 8:20, 10:14] = 1.0
    vol = extrude(img, 16)
    assert vol.shape == (2, 16, 16, 16)
    assert vol[:, :4].abs().sum() == 0 and vol[:, 12:].abs().sum() == 0
    for d in range(4, 12):
        assert torch.equal(vol[:, d], vol[:, 4])
    # Antialiased resize keeps the mean intensity: 48/784 of the image is lit.
    assert vol[0, 4].mean().item() == pytest.approx(48 / 784, rel=0.05)
    assert vol.min() >= 0.0 and vol.max() <= 1.0


def test_resample_volume_shrinks_by_area_and_keeps_size() -> None:
    vol = torch.rand(3, 16, 16, 16)
    assert torch.equal(resample_volume(vol, 16), vol)
    small = resample_volume(vol, 8)
    assert small.shape == (3, 8, 8, 8)
    expected = vol.reshape(3, 8, 2, 8, 2, 8, 2).mean(dim=(2, 4, 6))
    assert torch.allclose(small, expected, atol=1e-6)
    assert resample_volume(vol, 20).shape == (3, 20, 20, 20)


def test_random_rotations_are_proper_and_uniform() -> None:
    r = random_rotation_matrices(4000, _gen(1))
    eye = torch.eye(3).expand(4000, 3, 3)
    assert torch.allclose(r @ r.transpose(1, 2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(4000), atol=1e-5)
    assert r.mean(dim=0).abs().max() < 0.05  # Haar measure: E[R] = 0
    assert torch.equal(r, random_rotation_matrices(4000, _gen(1)))


def test_rotate_volumes_about_depth_matches_rot90_and_keeps_depth() -> None:
    vol = torch.rand(2, 8, 8, 8)
    out = rotate_volumes(vol, z_rotation_matrices(torch.full((2,), 90.0)))
    assert any(torch.allclose(out, torch.rot90(vol, k, (2, 3)), atol=1e-5) for k in (1, 3))
    assert torch.allclose(rotate_volumes(vol, torch.eye(3).expand(2, 3, 3)), vol, atol=1e-6)


def test_3d_rotations_keep_shape_and_roughly_mass_of_real_digits() -> None:
    ds = load_digit_set(DataConfig(grid=16, coloring="none", max_per_digit=3), seed=0)
    vol = (ds.volumes[:, 0] + 1) / 2
    out = rotate_volumes(vol, random_rotations("3d", len(vol), _gen(2)))
    assert out.shape == vol.shape
    ratio = out.sum(dim=(1, 2, 3)) / vol.sum(dim=(1, 2, 3))
    assert ratio.min() > 0.8 and ratio.max() < 1.15
    assert not torch.allclose(out, vol, atol=0.1)
    colored = torch.rand(4, 3, 8, 8, 8)
    turned = rotate_volumes(colored, random_rotations("3d", 4, _gen(2)))
    assert turned.shape == colored.shape  # [N, C, D, H, W] also accepted


def test_rgby_channels_follow_the_recipe() -> None:
    v = torch.zeros(64, 4, 4, 4)
    v[:, 1, 1:3, 1:3] = torch.tensor([0.2, 0.5])
    out, labels = colorize(v, "rgby", _gen(3))
    assert out.shape == (64, 3, 4, 4, 4) and set(labels.tolist()) == {0, 1, 2, 3}
    occ = (v > 0).float()
    recipe = {0: "OVV", 1: "OOV", 2: "VOV", 3: "VVO"}
    for i in range(64):
        for c, kind in enumerate(recipe[int(labels[i])]):
            assert torch.equal(out[i, c], occ[i] if kind == "O" else v[i])


def test_colorize_is_deterministic_and_none_is_one_channel() -> None:
    v = 0.1 + 0.9 * torch.rand(10, 4, 4, 4)  # above the 1/255 dust floor
    a, la = colorize(v, "hue", _gen(5))
    b, lb = colorize(v, "hue", _gen(5))
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert torch.allclose(a.amax(dim=1), v)  # S = 1: the brightest channel is V
    g, lg = colorize(v, "none", _gen(5))
    assert g.shape == (10, 1, 4, 4, 4) and lg.tolist() == [0] * 10
    assert palette("none").shape == (1, 1)
    for name in ("rgby", "hue", "none"):
        assert palette(name).shape[0] == len(COLOR_NAMES[name])


@pytest.mark.parametrize("coloring", ["rgby", "hue", "none"])
@pytest.mark.parametrize(("grid", "rotation"), [(8, "none"), (16, "3d")])
def test_dominant_color_recovers_every_real_label(coloring: str, grid: int, rotation: str) -> None:
    cfg = DataConfig(grid=grid, coloring=coloring, rotation=rotation, max_per_digit=30)
    ds = load_digit_set(cfg, seed=0)
    assert len(ds.color) == 300
    assert torch.equal(dominant_color(ds.volumes, ds.palette), ds.color)
    if coloring != "none":
        assert len(set(ds.color.tolist())) == ds.palette.shape[0]  # every color occurs


@pytest.mark.parametrize("coloring", ["rgby", "hue"])
def test_dominant_color_survives_noise_and_haze(coloring: str) -> None:
    ds = load_digit_set(DataConfig(grid=8, coloring=coloring, max_per_digit=30), seed=0)
    noisy = ds.volumes + 0.05 * torch.randn(ds.volumes.shape, generator=_gen(7))
    background = (ds.volumes < -0.99).all(dim=1, keepdim=True)
    hazy = torch.where(background, torch.full_like(ds.volumes, -0.75), ds.volumes)
    # Hues near a bin edge may flip under noise; a gray background haze changes nothing.
    assert (dominant_color(noisy, ds.palette) == ds.color).float().mean() > 0.97
    assert torch.equal(dominant_color(hazy, ds.palette), ds.color)


def test_dominant_color_gives_minus_one_without_a_color() -> None:
    pal = palette("rgby")
    empty = -torch.ones(2, 3, 4, 4, 4)
    gray = empty.clone()
    gray[:, :, 1:3, 1:3, 1:3] = 0.6  # lit but achromatic
    nan = torch.full((1, 3, 4, 4, 4), float("nan"))
    x = torch.cat([empty[:1], gray[:1], nan])
    assert dominant_color(x, pal).tolist() == [-1, -1, -1]
    one = -torch.ones(2, 1, 4, 4, 4)
    one[1, 0, 2, 2, 2] = 1.0
    assert dominant_color(one, palette("none")).tolist() == [-1, 0]
    with pytest.raises(ValueError, match="palette"):
        dominant_color(empty, palette("none"))


def test_random_rotations_by_kind() -> None:
    assert random_rotations("none", 5, _gen()) is None
    z = random_rotations("z", 5, _gen())
    assert z is not None and torch.allclose(z[:, 2], torch.tensor([0.0, 0.0, 1.0]).expand(5, 3))
    r = random_rotations("3d", 5, _gen())
    assert r is not None and r.shape == (5, 3, 3) and r[:, 2, 2].abs().max() < 1.0
    with pytest.raises(ValueError, match="unknown rotation"):
        random_rotations("x", 5, _gen())


def test_draw_colors_then_paint_is_colorize() -> None:
    """Color drawn once, painted again on a new rendering: the split that lets a sample keep
    its color under fresh rotations."""
    v = 0.1 + 0.9 * torch.rand(10, 4, 4, 4)
    for coloring in ("rgby", "hue", "none"):
        out, labels = colorize(v, coloring, _gen(7))
        drawn, hues = draw_colors(10, coloring, _gen(7))
        assert torch.equal(labels, drawn)
        assert torch.equal(paint(v, coloring, drawn, hues), out)


def test_points_land_in_the_voxels_they_were_drawn_from() -> None:
    vol = torch.zeros(2, 8, 8, 8)
    vol[0, 2, 3, 5] = 1.0  # (d, h, w): point x = 5, y = 3, z = 2
    vol[1, 6, 1, 0] = 0.25
    vol[1, 6, 1, 7] = 0.75
    pts = sample_points(vol, 400, _gen(1), jitter=0.0)
    assert pts.shape == (2, 400, 3)
    cells = pts.floor().long()
    assert (cells[0] == torch.tensor([5, 3, 2])).all()
    right = (cells[1, :, 0] == 7).float().mean()
    assert 0.65 < right < 0.85  # drawn in proportion to intensity: 0.75
    counts = voxelize_points(pts, 8)
    assert counts.shape == (2, 8, 8, 8) and counts.amax() == 1.0
    assert counts[0, 2, 3, 5] == 1.0 and counts[0].sum() == 1.0
    assert counts[1, 6, 1, 7] == 1.0 and 0.25 < counts[1, 6, 1, 0] < 0.5
    outside = torch.full((1, 3, 3), 20.0)  # beyond the grid: dropped, not clamped to a face
    assert voxelize_points(outside, 8).sum() == 0.0


def test_rotating_points_matches_rotating_volumes() -> None:
    """One rotation convention for both: a quarter turn of the points voxelises to the
    quarter-turned volume."""
    vol = torch.zeros(1, 8, 8, 8)
    vol[0, 4, 1:3, 5:7] = 1.0  # an off-center block
    turn = z_rotation_matrices(torch.tensor([90.0]))
    pts = sample_points(vol, 2000, _gen(2), jitter=0.0)
    from_points = voxelize_points(rotate_points(pts, turn, 8), 8) > 0
    from_volume = rotate_volumes(vol, turn) > 0.5
    assert torch.equal(from_points, from_volume)


@pytest.mark.parametrize("coloring", ["rgby", "hue"])
def test_color_mixed_gives_every_real_digit_two_colors_and_keeps_its_shape(coloring: str) -> None:
    """Each sample keeps its lit voxels and brightness, and shows its own hue on one side of the
    cut and at least one other hue on the far side, its own on 10-90% of its lit voxels (the
    cut leaves 25-75% of the mass before it, counted in slices of uneven strokes). One-channel
    data is refused."""
    ds = load_digit_set(DataConfig(grid=16, coloring=coloring, max_per_digit=10), seed=0)
    torch.manual_seed(0)
    mixed = color_mixed(ds.volumes)
    u, m = unit_range(ds.volumes), unit_range(mixed)
    assert torch.equal(lit_voxels(u), lit_voxels(m))
    assert torch.allclose(u.amax(1), m.amax(1)) and torch.allclose(u.sum(1), m.sum(1))
    hues = nearest_hue(m.movedim(1, -1), ds.palette, VOXEL_CHROMA)
    for i in range(len(ds.color)):
        lit = lit_voxels(m[i : i + 1])[0]
        seen = hues[i][lit & (hues[i] >= 0)]
        own = (seen == ds.color[i]).float().mean()
        assert 0.1 <= own <= 0.9, (i, float(own))
        assert len(seen.unique()) >= 2
    with pytest.raises(ValueError, match="C>=2"):
        color_mixed(ds.volumes[:, :1])


def test_a_z_quarter_turn_is_the_datas_own_rotation_by_90_degrees():
    """The judge averages over `quarter_turns("z")`: they must be rotations the z data draw
    (about the depth axis, as `rotate_volumes` turns them), exact on the grid."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 8, 8, 8, generator=g)
    turns = quarter_turns("z")
    assert turns[0] == (0, 0, 0) and len(turns) == 4
    assert torch.equal(turn(x, turns[0]), x)
    for k, turns_k in enumerate(turns):
        angle = torch.full((2,), 90.0 * k)
        rotated = [rotate_volumes(x, z_rotation_matrices(sign * angle)) for sign in (1, -1)]
        assert any(torch.allclose(turn(x, turns_k), r, atol=1e-5) for r in rotated), k


def test_the_3d_quarter_turns_are_the_cubes_24_rotations():
    """Distinct, closed under composition, and rotations (no mirror image among them)."""
    probe = torch.arange(27.0).view(1, 1, 3, 3, 3)
    turns = quarter_turns("3d")
    images = {tuple(turn(probe, t).flatten().tolist()) for t in turns}
    assert len(turns) == len(images) == 24 and turns[0] == (0, 0, 0)
    for a in turns[:6]:
        for b in turns[::5]:
            assert tuple(turn(turn(probe, a), b).flatten().tolist()) in images
    mirrored = tuple(probe.flip(4).flatten().tolist())
    assert mirrored not in images
    assert quarter_turns("none") == ((0, 0, 0),)
    with pytest.raises(ValueError, match="unknown rotation"):
        quarter_turns("xy")
