"""Voxel transforms: extrusion, rotations, coloring, and the dominant-color read-out."""

from __future__ import annotations

import pytest
import torch

from otzoo.data import DataConfig, colorize, dominant_color, load_digit_set, palette
from otzoo.data.transforms import (
    COLOR_NAMES,
    band,
    extrude,
    random_rotation_matrices,
    resample_volume,
    rotate_3d,
    rotate_volumes,
    rotate_z,
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


def test_rotate_z_identity_half_turn_and_quarter_turn() -> None:
    img = torch.rand(4, 12, 12)
    assert torch.allclose(rotate_z(img, torch.zeros(4)), img, atol=1e-6)
    assert torch.allclose(rotate_z(img, torch.full((4,), 180.0)), img.flip(1, 2), atol=1e-5)
    quarter = rotate_z(img, torch.full((4,), 90.0))
    assert any(torch.allclose(quarter, torch.rot90(img, k, (1, 2)), atol=1e-5) for k in (1, 3))


def test_rotate_z_is_a_rotation_in_pixels_on_non_square_images() -> None:
    img = torch.zeros(1, 21, 41)  # center pixel (10, 20)
    img[0, 10, 28] = 1.0  # 8 pixels right of the center
    out = rotate_z(img, torch.tensor([90.0]))[0]
    row, col = divmod(int(out.argmax()), 41)
    assert col == 20 and abs(row - 10) == 8
    assert out.sum().item() == pytest.approx(1.0, abs=1e-5)


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


def test_rotate_3d_keeps_shape_and_roughly_mass_of_real_digits() -> None:
    ds = load_digit_set(DataConfig(grid=16, coloring="none", max_per_digit=3), seed=0)
    vol = (ds.volumes[:, 0] + 1) / 2
    out = rotate_3d(vol, _gen(2))
    assert out.shape == vol.shape
    ratio = out.sum(dim=(1, 2, 3)) / vol.sum(dim=(1, 2, 3))
    assert ratio.min() > 0.8 and ratio.max() < 1.15
    assert not torch.allclose(out, vol, atol=0.1)
    colored = torch.rand(4, 3, 8, 8, 8)
    assert rotate_3d(colored, _gen(2)).shape == colored.shape  # [N, C, D, H, W] also accepted


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
