"""Generator3D: shapes on even and odd grids, outputs in (-1, 1), gradients, bad latents."""

import pytest
import torch

from otzoo.nets import Generator3D, NetConfigError
from otzoo.nets.generator import level_sizes


def test_level_sizes_halve_rounding_up():
    assert level_sizes((16, 16, 16), 2) == [(16, 16, 16), (8, 8, 8), (4, 4, 4)]
    assert level_sizes((7, 9, 12), 2) == [(7, 9, 12), (4, 5, 6), (2, 3, 3)]


@pytest.mark.parametrize(("grid", "levels"), [((8, 8, 8), 1), ((16, 16, 16), 2), ((7, 9, 12), 2)])
def test_shape_range_and_gradients(grid, levels):
    torch.manual_seed(0)
    net = Generator3D(3 * 2**3, 3, grid, base=4, levels=levels)
    z = torch.randn(5, 3, 2, 2, 2, requires_grad=True)
    out = net(z)
    assert out.shape == (5, 3, *grid)
    assert out.abs().max() < 1  # tanh: inside the data range
    out.square().sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0  # the output depends on the latent
    assert all(p.grad is not None for p in net.parameters())


def test_samples_do_not_depend_on_their_batch():
    torch.manual_seed(0)
    net = Generator3D(24, 3, (8, 8, 8), base=4, levels=1)
    z = torch.randn(4, 24)
    assert torch.allclose(net(z)[:1], net(z[:1]), atol=1e-6)


def test_bad_arguments_raise_one_named_error():
    with pytest.raises(NetConfigError, match="base"):
        Generator3D(24, 3, (8, 8, 8), base=0)
    with pytest.raises(NetConfigError, match="norm"):
        Generator3D(24, 3, (8, 8, 8), norm="batch")
    net = Generator3D(24, 3, (8, 8, 8), base=4, levels=1)
    with pytest.raises(NetConfigError, match="latent_dim=81"):
        net(torch.randn(2, 3, 3, 3, 3))


def test_one_color_outputs_take_one_hue_a_sample():
    """With one_color every voxel's chroma (before the tanh) is a multiple of one vector per
    sample: the sample's hue. The free decoder's voxels point every way."""
    torch.manual_seed(0)
    z = torch.randn(3, 24)
    for one_color, rank_one in ((True, True), (False, False)):
        net = Generator3D(24, 3, (8, 8, 8), base=4, levels=1, one_color=one_color).double()
        pre = torch.atanh(net(z.double()))
        chroma = (pre - pre.mean(dim=1, keepdim=True)).flatten(2)  # [N, C, voxels]
        values = torch.linalg.svdvals(chroma)  # [N, C]
        assert bool((values[:, 1] < 1e-6 * values[:, 0]).all()) == rank_one
