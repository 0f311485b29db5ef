"""MLP: shapes, squeeze for d_out=1, residual identity, activations, gradients, round trip; PatchEmbed."""

import io

import pytest
import torch

from otzoo.nets import MLP, PatchEmbed, count_parameters
from otzoo.nets.common import ACTIVATIONS, NetConfigError


def _vectors(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("d_in", "d_out", "hidden"), [(2, 2, (16, 16)), (5, 3, (8,)), (4, 7, ())])
def test_shapes_and_finite(d_in, d_out, hidden):
    torch.manual_seed(0)
    out = MLP(d_in, d_out, hidden=hidden)(_vectors(6, d_in))
    assert out.shape == (6, d_out)
    assert torch.isfinite(out).all()


def test_out_dim_one_squeezes():
    torch.manual_seed(0)
    out = MLP(4, 1, hidden=(8,))(_vectors(5, 4))
    assert out.shape == (5,)


def test_parameter_count_matches_layers():
    net = MLP(3, 2, hidden=(4, 5))
    assert count_parameters(net) == (3 * 4 + 4) + (4 * 5 + 5) + (5 * 2 + 2)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_activation_runs(activation):
    torch.manual_seed(0)
    net = MLP(3, 3, hidden=(8,), activation=activation)
    assert isinstance(net.body[1], ACTIVATIONS[activation])
    out = net(_vectors(4, 3))
    assert out.shape == (4, 3) and torch.isfinite(out).all()


def test_unknown_activation_raises():
    with pytest.raises(ValueError, match="unknown activation 'gelu'; use one of celu"):
        MLP(2, 2, activation="gelu")


def test_residual_is_exactly_identity_at_init():
    torch.manual_seed(0)
    x = _vectors(8, 4)
    assert torch.equal(MLP(4, 4, residual=True)(x), x)
    assert not torch.equal(MLP(4, 4, residual=False)(x), x)


def test_residual_needs_equal_dims():
    with pytest.raises(ValueError, match="in_dim == out_dim"):
        MLP(3, 2, residual=True)


def test_bad_input_shape_raises():
    with pytest.raises(ValueError, match=r"\[N, 3\], got \[4, 2\]"):
        MLP(3, 1)(_vectors(4, 2))


def test_bad_hidden_width_raises():
    with pytest.raises(ValueError, match=r"hidden\[1\] must be a positive int"):
        MLP(3, 1, hidden=(4, 0))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = MLP(3, 1, hidden=(8, 8))
    net(_vectors(5, 3)).square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_state_dict_round_trip_reproduces_outputs():
    torch.manual_seed(0)
    net = MLP(3, 3, hidden=(8,), residual=True)
    with torch.no_grad():
        net.head.weight.normal_()
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    copy = MLP(3, 3, hidden=(8,), residual=True)
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    x = _vectors(4, 3)
    assert torch.equal(copy(x), net(x))
    assert not torch.equal(net(x), x)


def test_flatten_takes_voxels_as_their_flat_vector():
    """A dense potential on voxels (`flatten=True`): the same function of the flat grid."""
    torch.manual_seed(0)
    net = MLP(3 * 8, 1, hidden=(16,), flatten=True)
    x = torch.randn(5, 3, 2, 2, 2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(net(x), net(x.flatten(1)))
    assert net(x).shape == (5,)
    with pytest.raises(NetConfigError, match=r"\[N, 24\]"):
        net(torch.zeros(5, 3, 2, 2, 3))
    with pytest.raises(NetConfigError, match="residual=False"):
        MLP(24, 24, flatten=True, residual=True)


def _gradient_rank(net: torch.nn.Module, n: int = 60) -> int:
    """Rank of the potential's input gradients at n random grids: the directions its map moves in."""
    x = torch.randn(n, 3, 4, 4, 4, requires_grad=True)
    (grad,) = torch.autograd.grad(net(x).sum(), x)
    return int(torch.linalg.matrix_rank(grad.flatten(1)))


def test_patch_embed_lifts_the_rank_of_a_dense_potentials_gradient():
    torch.manual_seed(0)
    plain = MLP(192, 1, hidden=(8, 8), activation="elu", flatten=True)
    embed = PatchEmbed(3, 24, activation="elu")
    patched = MLP(8 * 24, 1, hidden=(8, 8), activation="elu", flatten=True, embed=embed)
    assert embed(torch.zeros(2, 3, 4, 4, 4)).shape == (2, 24, 2, 2, 2)
    assert _gradient_rank(plain) <= 8  # the span of the first layer's 8 rows
    assert _gradient_rank(patched) > 40


def test_patch_embed_refuses_a_grid_it_cannot_split():
    with pytest.raises(NetConfigError, match="divisible"):
        PatchEmbed(3, 8)(torch.zeros(1, 3, 5, 4, 4))
