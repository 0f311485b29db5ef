"""Input-convex potentials: shapes, midpoint convexity, monotone gradients, clamping, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from otzoo.nets.common import NetConfigError
from otzoo.nets.icnn import ConvICNN3D, DenseICNN, QuadraticPlus, potential_gradient


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _perturb(net: nn.Module, scale: float, seed: int) -> None:
    """Add N(0, scale^2) noise to every parameter (hidden-path weights go negative too)."""
    gen = _gen(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)


def _midpoint_gap(f: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """f((a+b)/2) - (f(a)+f(b))/2 per pair: <= 0 everywhere iff f is midpoint-convex on them."""
    with torch.no_grad():
        return f((a + b) / 2) - (f(a) + f(b)) / 2


def _monotonicity(f: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """<grad f(a) - grad f(b), a - b> per pair: >= 0 for a convex f."""
    ga, gb = potential_gradient(f, a), potential_gradient(f, b)
    return ((ga - gb) * (a - b)).flatten(1).sum(dim=1)


# -- DenseICNN ---------------------------------------------------------------------------------


def test_dense_default_layout_matches_benchmark():
    net = DenseICNN(4)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes["quadratic_layers.0.quadratic_decomposed"] == (4, 1, 64)
    assert shapes["quadratic_layers.2.weight"] == (32, 4)
    assert shapes["convex_layers.0.weight"] == (64, 64)
    assert shapes["convex_layers.1.weight"] == (32, 64)
    assert shapes["final_layer.weight"] == (1, 32)
    assert len(shapes) == 3 * 3 + 2 + 1
    assert DenseICNN(40).hidden == (80, 80, 40)


@pytest.mark.parametrize("hidden", [(16,), (8, 12), (8, 8, 8, 8)])
@pytest.mark.parametrize("activation", ["celu", "softplus"])
def test_dense_shapes_any_depth(hidden, activation):
    torch.manual_seed(0)
    net = DenseICNN(3, hidden=hidden, rank=2, activation=activation)
    out = net(torch.randn(7, 3, generator=_gen(1)))
    assert out.shape == (7,)
    assert torch.isfinite(out).all()
    assert len(net.convex_layers) == len(hidden) - 1


def test_dense_forward_matches_readme_formula():
    """Independent evaluation of the README's forward pass on random weights."""
    torch.manual_seed(0)
    net = DenseICNN(3, hidden=(5, 6, 4), rank=2, strong_convexity=0.3)
    _perturb(net, 0.5, seed=1)
    x = torch.randn(9, 3, generator=_gen(2))
    sd = net.state_dict()

    def q(k: int) -> torch.Tensor:
        a = sd[f"quadratic_layers.{k}.quadratic_decomposed"]
        quad = torch.einsum("bi,iro->bro", x, a).pow(2).sum(dim=1)
        return quad + x @ sd[f"quadratic_layers.{k}.weight"].T + sd[f"quadratic_layers.{k}.bias"]

    h = q(0)
    for j in range(2):
        h = torch.celu(h @ sd[f"convex_layers.{j}.weight"].T + q(j + 1))
    expected = (h @ sd["final_layer.weight"].T)[:, 0] + 0.15 * (x**2).sum(dim=1)
    torch.testing.assert_close(net(x), expected)


@pytest.mark.parametrize("perturb", [0.0, 1.0])
def test_dense_is_convex_and_gradient_monotone(perturb):
    torch.manual_seed(0)
    net = DenseICNN(4, hidden=(16, 16, 8)).double()
    if perturb:
        _perturb(net, perturb, seed=3)
        net.clamp_convex()
    a = 2 * torch.randn(512, 4, generator=_gen(4), dtype=torch.float64)
    b = 2 * torch.randn(512, 4, generator=_gen(5), dtype=torch.float64)
    assert _midpoint_gap(net, a, b).max() <= 1e-9
    assert _monotonicity(net, a, b).min() >= -1e-9


def test_dense_without_clamp_is_not_convex():
    """The control for the test above: negative hidden weights do break convexity."""
    torch.manual_seed(0)
    net = DenseICNN(4, hidden=(16, 16, 8)).double()
    _perturb(net, 1.0, seed=3)
    a = 2 * torch.randn(512, 4, generator=_gen(4), dtype=torch.float64)
    b = 2 * torch.randn(512, 4, generator=_gen(5), dtype=torch.float64)
    assert _midpoint_gap(net, a, b).max() > 1e-3


def test_dense_clamp_and_penalty():
    torch.manual_seed(0)
    net = DenseICNN(3, hidden=(8, 8))
    assert net.convexity_penalty().item() == 0.0  # starts convex
    with torch.no_grad():
        net.convex_layers[0].weight[0, 0] = -2.0
        net.final_layer.weight[0, 1] = -1.0
        quad_before = net.quadratic_layers[0].weight.clone()
    assert net.convexity_penalty().item() == pytest.approx(5.0)
    net.clamp_convex()
    assert net.convex_layers[0].weight.min() >= 0 and net.final_layer.weight.min() >= 0
    assert net.convexity_penalty().item() == 0.0
    torch.testing.assert_close(net.quadratic_layers[0].weight, quad_before)  # x-path untouched


def test_dense_penalty_has_gradient_on_negative_weights():
    net = DenseICNN(2, hidden=(4, 4))
    with torch.no_grad():
        net.final_layer.weight[0, 0] = -0.5
    net.convexity_penalty().backward()
    assert net.final_layer.weight.grad[0, 0].item() == pytest.approx(-1.0)


def test_dense_rejects_bad_arguments():
    with pytest.raises(NetConfigError, match="activation"):
        DenseICNN(2, activation="relu6")
    with pytest.raises(NetConfigError, match="hidden"):
        DenseICNN(2, hidden=())
    with pytest.raises(NetConfigError, match=r"\[N, 3\]"):
        DenseICNN(3)(torch.zeros(2, 4))
    with pytest.raises(NetConfigError, match=r"\[N, 24\]"):
        DenseICNN(24)(torch.zeros(2, 3, 2, 2, 3))  # a grid of the wrong size is not flattened


def test_dense_on_voxels_is_the_same_potential_on_the_flat_grid():
    """W2GN's voxel potential: the function of the flattened vector, convex, and its gradient
    (the map) has the voxels' shape."""
    torch.manual_seed(0)
    net = DenseICNN(3 * 8, hidden=(16, 8)).double()
    a = torch.rand(64, 3, 2, 2, 2, generator=_gen(4), dtype=torch.float64)
    b = torch.rand(64, 3, 2, 2, 2, generator=_gen(5), dtype=torch.float64)
    torch.testing.assert_close(net(a), net(a.flatten(1)))
    assert _midpoint_gap(net, a, b).max() <= 1e-9
    torch.testing.assert_close(
        potential_gradient(net, a), potential_gradient(net, a.flatten(1)).reshape(a.shape)
    )


# -- ConvICNN3D --------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("perturb", [0.0, 0.5])
def test_conv_is_convex_and_gradient_monotone(channels, perturb):
    torch.manual_seed(0)
    net = ConvICNN3D(channels, base=4, levels=2).double()
    if perturb:
        _perturb(net, perturb, seed=6)
        net.clamp_convex()
    shape = (48, channels, 8, 8, 8)
    a = torch.randn(shape, generator=_gen(7), dtype=torch.float64)
    b = torch.randn(shape, generator=_gen(8), dtype=torch.float64)
    fa = net(a)
    assert fa.shape == (48,) and torch.isfinite(fa).all()
    scale = fa.abs().max().item() + 1.0
    assert _midpoint_gap(net, a, b).max() <= 1e-10 * scale
    assert _monotonicity(net, a, b).min() >= -1e-10 * scale


def test_conv_without_clamp_is_not_convex():
    torch.manual_seed(0)
    net = ConvICNN3D(1, base=4, levels=2).double()
    _perturb(net, 0.5, seed=6)
    a = torch.randn(48, 1, 8, 8, 8, generator=_gen(7), dtype=torch.float64)
    b = torch.randn(48, 1, 8, 8, 8, generator=_gen(8), dtype=torch.float64)
    assert _midpoint_gap(net, a, b).max() > 1e-6


@pytest.mark.parametrize("grid", [(8, 8, 8), (5, 6, 7)])
@pytest.mark.parametrize("levels", [1, 3])
def test_conv_any_grid_and_depth(grid, levels):
    torch.manual_seed(0)
    net = ConvICNN3D(3, base=2, levels=levels)
    x = torch.randn(2, 3, *grid, generator=_gen(9))
    out = net(x)
    assert out.shape == (2,) and torch.isfinite(out).all()
    grad = potential_gradient(net, x)
    assert grad.shape == x.shape and torch.isfinite(grad).all()


def test_conv_clamp_and_bad_input():
    torch.manual_seed(0)
    net = ConvICNN3D(1, base=2, levels=2)
    _perturb(net, 1.0, seed=10)
    assert net.convexity_penalty().item() > 0
    net.clamp_convex()
    assert net.convexity_penalty().item() == 0.0
    assert all(layer.weight.min() >= 0 for layer in [*net.z_layers, net.final_layer])
    assert any(layer.weight.min() < 0 for layer in net.x_layers)  # x-path stays free
    with pytest.raises(NetConfigError, match="ConvICNN3D"):
        net(torch.zeros(1, 3, 8, 8, 8))


def test_conv_quadratic_term_is_not_normalised():
    """With the network part zeroed, f = 0.5*s*||x||^2 and grad f = s*x (documented scale)."""
    net = ConvICNN3D(1, base=2, levels=1, strong_convexity=0.25)
    with torch.no_grad():
        net.final_layer.weight.zero_()
    x = torch.randn(3, 1, 4, 4, 4, generator=_gen(11))
    torch.testing.assert_close(net(x), 0.125 * x.pow(2).flatten(1).sum(1))
    torch.testing.assert_close(potential_gradient(net, x), 0.25 * x)


# -- QuadraticPlus and potential_gradient ------------------------------------------------------


def test_quadratic_plus_vectors_and_voxels():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(5, 8), nn.SiLU(), nn.Linear(8, 1))
    f = QuadraticPlus(mlp, log_scale_init=0.5)
    x = torch.randn(6, 5, generator=_gen(12))
    out = f(x)
    assert out.shape == (6,)
    expected = mlp(x)[:, 0] + 0.5 * torch.exp(torch.tensor(0.5)) * (x**2).sum(1)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert f.log_scale.grad is not None and f.log_scale.grad.item() > 0

    conv = ConvICNN3D(2, base=2, levels=1)
    vox = torch.randn(3, 2, 4, 4, 4, generator=_gen(13))
    assert QuadraticPlus(conv)(vox).shape == (3,)


def test_quadratic_plus_fixed_scale_is_saved_but_not_trained():
    """learn_scale=False (ENOT's potentials): the scale stays what it was set to, is not among
    the parameters an optimizer sees, and travels with the state dict."""
    net = nn.Linear(3, 1)
    f = QuadraticPlus(net, log_scale_init=-math.log(8.0), learn_scale=False)
    x = torch.randn(4, 3, generator=_gen(14))
    torch.testing.assert_close(f(x), net(x)[:, 0] + 0.5 * (x**2).sum(1) / 8.0)
    assert [id(p) for p in f.parameters()] == [id(p) for p in net.parameters()]
    assert "log_scale" in f.state_dict()


def test_quadratic_plus_rejects_vector_output():
    f = QuadraticPlus(nn.Linear(4, 3))
    with pytest.raises(NetConfigError, match="one output"):
        f(torch.zeros(2, 4))


class _HalfSquaredNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x.pow(2).flatten(1).sum(1)


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4, 4, 4)])
def test_potential_gradient_of_half_norm_is_identity(shape):
    x = torch.randn(shape, generator=_gen(14))
    with torch.no_grad():  # works inside no_grad evaluation code too
        grad = potential_gradient(_HalfSquaredNorm(), x)
    torch.testing.assert_close(grad, x)
    assert not grad.requires_grad and not x.requires_grad


def test_potential_gradient_create_graph_reaches_params_and_input():
    f = QuadraticPlus(nn.Sequential(nn.Linear(3, 1)), log_scale_init=0.0)
    with torch.no_grad():
        f.net[0].weight.zero_()
    x = torch.randn(4, 3, generator=_gen(15)).requires_grad_(True)
    grad = potential_gradient(f, x, create_graph=True)  # = exp(a) * x
    torch.testing.assert_close(grad, x.detach())
    grad.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))
    assert f.log_scale.grad.item() == pytest.approx(x.detach().sum().item(), rel=1e-5)
