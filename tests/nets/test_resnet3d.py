"""ResNet3D potential: [N] output, batch independence, gradients, errors, round trip."""

import io

import pytest
import torch

from otzoo.errors import ConfigError
from otzoo.nets import ResNet3D


def _voxels(n: int, c: int, grid: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, grid, grid, grid, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("grid", [8, 16])
@pytest.mark.parametrize(("levels", "blocks"), [(1, 1), (2, 1), (3, 2)])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_shape_is_n_and_finite(grid, levels, blocks, channels):
    torch.manual_seed(0)
    net = ResNet3D(channels, base=4, blocks=blocks, levels=levels)
    out = net(_voxels(3, channels, grid))
    assert out.shape == (3,)
    assert torch.isfinite(out).all()


def test_outputs_depend_on_input():
    torch.manual_seed(0)
    net = ResNet3D(3, base=4)
    out = net(_voxels(4, 3, 8))
    assert out.std() > 1e-4


@pytest.mark.parametrize("norm", ["group", "none"])
def test_batch_independent_in_train_mode(norm):
    torch.manual_seed(0)
    net = ResNet3D(3, base=8, blocks=2, levels=2, norm=norm).train()
    x = _voxels(6, 3, 8)
    batched = net(x)
    for i in range(len(x)):
        alone = net(x[i : i + 1])
        torch.testing.assert_close(alone, batched[i : i + 1], atol=1e-6, rtol=0)
    # the same sample among other company
    other = torch.cat([x[:1], _voxels(5, 3, 8, seed=9)])
    torch.testing.assert_close(net(other)[0], batched[0], atol=1e-6, rtol=0)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = ResNet3D(3, base=4, blocks=2, levels=2)
    net(_voxels(2, 3, 8)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_input_gradient_flows():
    """Potentials are differentiated w.r.t. their input (gradient penalties, maps grad f)."""
    torch.manual_seed(0)
    x = _voxels(2, 3, 8).requires_grad_(True)
    (grad,) = torch.autograd.grad(ResNet3D(3, base=4)(x).sum(), x)
    assert grad.shape == x.shape and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_state_dict_round_trip_reproduces_outputs():
    torch.manual_seed(0)
    net = ResNet3D(3, base=4, blocks=1, levels=2)
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(99)
    copy = ResNet3D(3, base=4, blocks=1, levels=2)
    x = _voxels(3, 3, 8)
    assert not torch.equal(copy(x), net(x))
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(copy(x), net(x))


def test_wrong_input_channels_raise():
    with pytest.raises(ValueError, match=r"ResNet3D expects voxels of shape \[N, 3, D, H, W\]"):
        ResNet3D(3, base=4)(_voxels(2, 1, 8))


@pytest.mark.parametrize(
    "kwargs", [{"levels": 0}, {"blocks": 0}, {"base": -1}, {"norm": "batch"}, {"activation": "x"}]
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ConfigError):
        ResNet3D(3, **kwargs)


def test_zero_output_makes_the_potential_constant_with_zero_gradient():
    from otzoo.nets import MLP
    from otzoo.nets.common import zero_output

    torch.manual_seed(0)
    net = ResNet3D(3, base=4, levels=1)
    x = _voxels(3, 3, 8).requires_grad_(True)
    assert net(x).std() > 0  # an untrained net is not constant
    zero_output(net)
    out = net(x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(out, torch.zeros(3)) and torch.equal(grad, torch.zeros_like(x))
    assert torch.equal(zero_output(MLP(4, 1, hidden=(8,)))(torch.randn(2, 4)), torch.zeros(2))
    with pytest.raises(ConfigError, match="no linear output layer"):
        zero_output(torch.nn.Conv3d(3, 1, 1))


def test_context_films_start_at_zero_then_read_the_channel_means():
    """context=True: the plain potential at init; once its FiLMs are non-zero the value (and its
    gradient) depends on the input's per-channel mean, per sample (batch independent)."""
    torch.manual_seed(0)
    net = ResNet3D(3, base=4, levels=2, context=True)
    plain = ResNet3D(3, base=4, levels=2)
    plain.load_state_dict(net.state_dict(), strict=False)
    x = _voxels(4, 3, 8)
    assert len(net.films) == 2 + 1 and net.films[0].in_features == 3
    assert torch.equal(net(x), plain(x))
    with torch.no_grad():
        for film in net.films:
            film.weight.normal_(std=0.3)
    assert (net(x) - plain(x)).abs().max() > 1e-3
    assert torch.allclose(net(x)[1:2], net(x[1:2]), atol=1e-6)
    x.requires_grad_(True)
    net(x).sum().backward()
    assert torch.isfinite(x.grad).all() and all(f.weight.grad.abs().sum() > 0 for f in net.films)
