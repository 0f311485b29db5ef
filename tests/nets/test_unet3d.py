"""UNet3D: shapes over grids/depths/channels, identity at init, noise input, gradients, errors."""

import io

import pytest
import torch

from otzoo.errors import ConfigError
from otzoo.nets import UNet3D
from otzoo.nets.unet3d import max_depth


def _voxels(n: int, c: int, grid: int | tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    size = (grid,) * 3 if isinstance(grid, int) else grid
    return torch.randn(n, c, *size, generator=torch.Generator().manual_seed(seed))


def _perturb_head(net: UNet3D, seed: int = 1) -> None:
    """Give the zero-initialised head non-zero weights so the features reach the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.head.weight.copy_(0.1 * torch.randn(net.head.weight.shape, generator=gen))
        net.head.bias.copy_(0.1 * torch.randn(net.head.bias.shape, generator=gen))


@pytest.mark.parametrize(
    ("grid", "depth"), [(8, 1), (8, 2), (16, 1), (16, 2), (16, 3), ((7, 9, 12), 2)]
)
@pytest.mark.parametrize("channels", [1, 3, 5])
def test_shape_and_finite(grid, depth, channels):
    torch.manual_seed(0)
    net = UNet3D(channels, base=4, depth=depth, residual=False)
    x = _voxels(2, channels, grid)
    out = net(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_out_channels_differ_without_residual():
    net = UNet3D(3, out_channels=2, base=4, depth=2, residual=False)
    assert net(_voxels(2, 3, 8)).shape == (2, 2, 8, 8, 8)


def test_32_grid_depth_4():
    net = UNet3D(3, base=2, depth=4, residual=False, activation="leaky_relu", norm="none")
    out = net(_voxels(1, 3, 32))
    assert out.shape == (1, 3, 32, 32, 32)
    assert torch.isfinite(out).all()


def test_max_depth_values():
    assert max_depth((8, 8, 8)) == 2
    assert max_depth((16, 16, 16)) == 3
    assert max_depth((32, 32, 32)) == 4
    assert max_depth((16, 16, 8)) == 2  # the smallest side decides
    assert max_depth((3, 3, 3)) == 1
    assert max_depth((7, 9, 12)) == 2  # 7 -> 4 -> 2


@pytest.mark.parametrize(("grid", "depth", "deepest"), [(8, 3, 2), (16, 4, 3)])
def test_too_deep_for_grid_is_clear_value_error(grid, depth, deepest):
    net = UNet3D(3, base=2, depth=depth)
    with pytest.raises(ValueError, match=rf"{grid}x{grid}x{grid} grid: max depth is {deepest}"):
        net(_voxels(1, 3, grid))


def test_residual_is_exactly_identity_at_init():
    torch.manual_seed(0)
    for grid, depth in [(8, 2), (16, 3)]:
        net = UNet3D(3, base=4, depth=depth)
        x = _voxels(3, 3, grid)
        assert torch.equal(net(x), x)


def test_non_residual_is_not_identity():
    torch.manual_seed(0)
    net = UNet3D(3, base=4, depth=2, residual=False)
    x = _voxels(3, 3, 8)
    assert (net(x) - x).abs().max() > 1e-3


def test_residual_needs_equal_channels():
    with pytest.raises(ValueError, match="out_channels == in_channels"):
        UNet3D(3, out_channels=1, residual=True)


def test_noise_changes_output_once_head_is_nonzero():
    torch.manual_seed(0)
    net = UNet3D(3, base=4, depth=2, noise_channels=2)
    x = _voxels(2, 3, 8)
    z1, z2 = _voxels(2, 2, 8, seed=1), _voxels(2, 2, 8, seed=2)
    assert torch.equal(net(x, z1), x)  # identity at init whatever the noise
    _perturb_head(net)
    out1, out1_again, out2 = net(x, z1), net(x, z1), net(x, z2)
    assert torch.equal(out1, out1_again)
    assert (out1 - out2).abs().max() > 1e-4


def test_noise_required_and_forbidden():
    noisy = UNet3D(3, base=4, depth=1, noise_channels=1)
    x = _voxels(1, 3, 8)
    with pytest.raises(ValueError, match="needs noise z"):
        noisy(x)
    with pytest.raises(ValueError, match=r"expected \[1, 1, 8, 8, 8\]"):
        noisy(x, _voxels(1, 2, 8))
    with pytest.raises(ValueError, match="noise_channels=0"):
        UNet3D(3, base=4, depth=1)(x, _voxels(1, 1, 8))


def test_wrong_input_channels_raise():
    with pytest.raises(ValueError, match=r"\[N, 3, D, H, W\], got \[1, 2, 8, 8, 8\]"):
        UNet3D(3, base=4, depth=1)(_voxels(1, 2, 8))


@pytest.mark.parametrize(
    "kwargs",
    [{"depth": 0}, {"base": 0}, {"noise_channels": -1}, {"norm": "batch"}, {"activation": "x"}],
)
def test_bad_arguments_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        UNet3D(3, **kwargs)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = UNet3D(3, base=4, depth=2, noise_channels=1)
    x, z = _voxels(2, 3, 8), _voxels(2, 1, 8, seed=1)
    net(x, z).square().mean().backward()  # at init only the head gets a non-zero gradient
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert net.head.weight.grad.abs().sum() > 0

    net.zero_grad()
    _perturb_head(net)
    net(x, z).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_state_dict_round_trip_reproduces_outputs():
    torch.manual_seed(0)
    net = UNet3D(3, base=4, depth=2, noise_channels=1)
    _perturb_head(net)
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(123)
    copy = UNet3D(3, base=4, depth=2, noise_channels=1)
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    x, z = _voxels(2, 3, 8), _voxels(2, 1, 8, seed=1)
    assert torch.equal(copy(x, z), net(x, z))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    net = UNet3D(3, base=4, depth=2, residual=False)
    x = _voxels(2, 3, 16)
    expected = net(x)
    out = net.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_clamp_keeps_outputs_in_range_and_passes_gradients_inside():
    torch.manual_seed(0)
    net = UNet3D(3, base=4, depth=1, residual=False, clamp=(-1.0, 1.0))
    free = UNet3D(3, base=4, depth=1, residual=False)
    free.load_state_dict(net.state_dict())
    x = torch.randn(2, 3, 8, 8, 8) * 3
    y, raw = net(x), free(x)
    assert y.min() >= -1 and y.max() <= 1
    inside = (raw > -1) & (raw < 1)
    assert torch.equal(y[inside], raw[inside]) and not bool(inside.all())
    with pytest.raises(ConfigError, match="low < high"):
        UNet3D(3, clamp=(1.0, -1.0))


def test_cond_films_start_as_the_identity_and_then_every_stage_listens():
    """FiLM starts at zero, so a conditioned net equals its unconditioned twin at init; once
    its layers are non-zero the output depends on cond, and every film layer gets a gradient."""
    torch.manual_seed(0)
    net = UNet3D(3, base=4, depth=2, residual=False, cond_dim=5)
    plain = UNet3D(3, base=4, depth=2, residual=False)
    plain.load_state_dict(net.state_dict(), strict=False)
    x, c1, c2 = _voxels(2, 3, 8), torch.randn(2, 5), torch.randn(2, 5)
    assert len(net.films) == 1 + 2 * 2
    assert torch.equal(net(x, cond=c1), plain(x))
    with torch.no_grad():
        for film in net.films:
            film.weight.normal_(std=0.3)
    assert (net(x, cond=c1) - net(x, cond=c2)).abs().max() > 1e-3
    net(x, cond=c1).square().mean().backward()
    for i, film in enumerate(net.films):
        assert film.weight.grad.abs().sum() > 0, i


def test_context_films_read_the_inputs_channel_means():
    """context=True is FiLM from the input's per-channel mean (after any cond): the identity at
    init, then the same net as one given that mean as its condition."""
    torch.manual_seed(0)
    net = UNet3D(3, base=4, depth=2, context=True)
    x = _voxels(2, 3, 8)
    assert torch.equal(net(x), x)  # residual head and films start at zero
    assert [film.in_features for film in net.films] == [3] * (1 + 2 * 2)
    with torch.no_grad():
        for film in net.films:
            film.weight.normal_(std=0.3)
        net.head.weight.normal_(std=0.3)
    twin = UNet3D(3, base=4, depth=2, cond_dim=3)
    twin.load_state_dict(net.state_dict())
    assert torch.allclose(net(x), twin(x, cond=x.mean(dim=(2, 3, 4))), atol=1e-6)
    assert not torch.allclose(net(x), twin(x, cond=torch.zeros(2, 3)), atol=1e-3)
    both = UNet3D(3, base=4, depth=1, cond_dim=2, context=True)
    assert both.films[0].in_features == 5
    assert both(x, cond=torch.randn(2, 2)).shape == x.shape


def test_cond_required_forbidden_and_checked():
    x = _voxels(2, 3, 8)
    conditioned = UNet3D(3, base=4, depth=1, cond_dim=4)
    with pytest.raises(ValueError, match=r"needs cond of shape \[2, 4\], got None"):
        conditioned(x)
    with pytest.raises(ValueError, match=r"got \[2, 3\]"):
        conditioned(x, cond=torch.randn(2, 3))
    with pytest.raises(ValueError, match="cond_dim=0"):
        UNet3D(3, base=4, depth=1)(x, cond=torch.randn(2, 4))
    for bad in (-1, 2.0, True):
        with pytest.raises(ConfigError, match="cond_dim"):
            UNet3D(3, cond_dim=bad)


def test_hue_plane_moves_voxels_only_along_gray_and_the_inputs_hue():
    """hue_plane: identity at init; with a trained-looking head every voxel's move lies in the
    plane of gray and the input's mean chroma (a red digit gains red, white or gray voxels,
    never green ones), where the plain head's moves do not; a gray input moves along gray, a
    one-channel one too; a flow's velocity (no residual) is itself such a move."""
    from otzoo.data.transforms import paint
    from tests.conftest import off_hue_plane

    torch.manual_seed(0)
    volumes = (torch.rand(2, 8, 8, 8) > 0.8).float() * 0.6  # full intensity would be white
    x = paint(volumes, "rgby", torch.tensor([0, 2]), torch.zeros(2)) * 2 - 1  # red, green
    plain, plane = UNet3D(3, base=4, depth=1), UNet3D(3, base=4, depth=1, hue_plane=True)
    assert torch.equal(plane(x), x)
    _perturb_head(plain)
    _perturb_head(plane)
    assert (
        off_hue_plane((plane(x) - x).detach(), x) < 1e-4 < off_hue_plane((plain(x) - x).detach(), x)
    )
    gray = x.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1, -1).contiguous()
    moves = (plane(gray) - gray).detach()
    assert moves.abs().max() > 1e-3 and (moves - moves.mean(dim=1, keepdim=True)).abs().max() < 1e-5
    one = UNet3D(1, base=4, depth=1, hue_plane=True)  # one channel: the gray move alone
    _perturb_head(one)
    assert (one(x[:, :1]) - x[:, :1]).abs().max() > 1e-3
    with pytest.raises(ConfigError, match="hue_plane"):
        UNet3D(3, out_channels=2, residual=False, hue_plane=True)
    velocity = UNet3D(3, base=4, depth=1, residual=False, hue_plane=True, noise_channels=1)
    _perturb_head(velocity)
    v = velocity(x, torch.zeros(2, 1, 8, 8, 8)).detach()  # the move itself
    assert v.abs().max() > 1e-3 and off_hue_plane(v, x) < 1e-4


def test_hue_plane_project_keeps_moves_in_the_plane_and_drops_the_rest():
    """The projection used on gradient maps: a move built in the plane is returned as it is,
    one orthogonal to it (the third channel direction) vanishes, and projecting twice is once."""
    from otzoo.data.transforms import paint
    from otzoo.nets.unet3d import hue_plane_basis, hue_plane_project, hue_plane_step

    torch.manual_seed(0)
    volumes = (torch.rand(2, 4, 4, 4) > 0.5).float() * 0.6  # full intensity would be white
    x = paint(volumes, "rgby", torch.tensor([0, 3]), torch.zeros(2)) * 2 - 1  # red, blue
    inside = hue_plane_step(torch.randn(2, 2, 4, 4, 4), x)
    assert torch.allclose(hue_plane_project(inside, x), inside, atol=1e-6)
    gray, chroma = hue_plane_basis(x)
    assert chroma.abs().amin(dim=1).max() > 0.1  # a hue in both: the plane is a plane
    normal = torch.linalg.cross(gray.flatten(1), chroma.flatten(1), dim=1).view_as(gray)
    across = normal * torch.randn(2, 1, 4, 4, 4)
    assert across.abs().max() > 0.1 and hue_plane_project(across, x).abs().max() < 1e-6
    move = torch.randn(2, 3, 4, 4, 4)
    once = hue_plane_project(move, x)
    assert torch.allclose(hue_plane_project(once, x), once, atol=1e-6)


def test_color_blind_potential_is_the_same_for_every_color_and_moves_along_the_inputs_hue():
    """ColorBlind: a red digit and the green one of the same shape (rgby: the channels swapped)
    get the same potential, and the green one's gradient is the red one's with the channels
    swapped: one shape is learned once for every color. The gradient's off-plane part is one
    vector for the whole grid (from the basis's dependence on the mean color), so a stroke the
    map draws takes the input's hue; a net on RGB has neither property."""
    from otzoo.data.transforms import paint
    from otzoo.nets import ResNet3D
    from otzoo.nets.icnn import potential_gradient
    from otzoo.nets.unet3d import ColorBlind, hue_plane_coords, hue_plane_project

    torch.manual_seed(0)
    volumes = (torch.rand(1, 8, 8, 8) > 0.7).float() * torch.rand(1, 8, 8, 8)
    red, green = (paint(volumes, "rgby", torch.tensor([c]), torch.zeros(1)) * 2 - 1 for c in (0, 2))
    assert torch.allclose(red[:, [1, 0, 2]], green)
    assert hue_plane_coords(red).shape == (1, 2, 8, 8, 8)
    blind = ColorBlind(ResNet3D(2, base=4, levels=1))
    rgb = ResNet3D(3, base=4, levels=1)
    assert torch.allclose(blind(red), blind(green), atol=1e-6)
    assert not torch.allclose(rgb(red), rgb(green), atol=1e-6)
    g_red, g_green = (potential_gradient(blind, x) for x in (red, green))
    assert g_red.abs().max() > 1e-6
    assert torch.allclose(g_red[:, [1, 0, 2]], g_green, atol=1e-7)
    off = g_red - hue_plane_project(g_red, red)
    assert off.abs().max() > 0  # the basis's term: real, and the same at every voxel
    assert (off - off[:, :, :1, :1, :1]).abs().max() < 1e-9 + 1e-4 * off.abs().max()
