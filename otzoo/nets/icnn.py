"""Input-convex potentials (dense and 3D-convolutional) and the gradient map of a potential.

A convex potential f gives an optimal map grad f for the quadratic cost (Brenier), which is how
W2GN and the amortized-conjugate solver parametrize their maps. Convexity in x holds when the
hidden path (z -> z) has non-negative weights, the activations are convex and non-decreasing,
and x enters only through affine (or convex quadratic) terms; `clamp_convex` restores the
non-negative part after an optimizer step, `convexity_penalty` is the soft alternative.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from otzoo.nets.common import NetConfigError, check_positive, check_voxels

CONVEX_ACTIVATIONS = ("celu", "softplus")
GRID_WIDTHS = (128, 128, 64)  # a dense potential's default widths on a flattened voxel grid


def _convex_activation(name: str) -> nn.Module:
    """CELU or softplus: convex and non-decreasing, so they keep sums of convex terms convex."""
    if name == "celu":
        return nn.CELU()
    if name == "softplus":
        return nn.Softplus()
    raise NetConfigError(
        f"activation {name!r} is not convex and non-decreasing; use one of {CONVEX_ACTIVATIONS}"
    )


class ConvexQuadratic(nn.Module):
    """x -> sum_r (x @ A[:, r, :])**2 + x @ W.T + b: convex in x for any A, W, b.

    Parameter names and shapes match the W2 benchmark files: `quadratic_decomposed`
    (dim, rank, out), `weight` (out, dim), `bias` (out,).
    """

    def __init__(self, dim: int, out_features: int, rank: int = 1, init_std: float = 0.1):
        super().__init__()
        self.quadratic_decomposed = nn.Parameter(torch.randn(dim, rank, out_features) * init_std)
        self.weight = nn.Parameter(torch.randn(out_features, dim) * init_std)
        self.bias = nn.Parameter(torch.randn(out_features) * init_std)

    def forward(self, x: Tensor) -> Tensor:
        # [N, dim] x [dim, rank*out] -> [N, rank, out], squared and summed over the rank.
        dim, rank, out = self.quadratic_decomposed.shape
        proj = (x @ self.quadratic_decomposed.reshape(dim, rank * out)).reshape(-1, rank, out)
        return (proj**2).sum(dim=1) + F.linear(x, self.weight, self.bias)


class _ConvexMixin:
    """Convexity upkeep shared by the ICNNs: weights on the hidden path must stay >= 0."""

    def _hidden_path(self) -> list[nn.Module]:
        raise TypeError(f"{type(self).__name__} must define _hidden_path")

    @torch.no_grad()
    def clamp_convex(self) -> None:
        """Project the hidden-path weights onto >= 0 (call after every optimizer step)."""
        for layer in self._hidden_path():
            layer.weight.clamp_(min=0.0)

    def convexity_penalty(self) -> Tensor:
        """Sum of squared negative parts of the hidden-path weights (a soft alternative)."""
        return sum(F.relu(-layer.weight).pow(2).sum() for layer in self._hidden_path())


class DenseICNN(_ConvexMixin, nn.Module):
    """Dense input-convex potential; parameter names and forward pass match the W2 benchmark files.

    On voxels it sees the flattened grid, so every voxel has its own weights (a ConvICNN3D shares
    them across the grid); W2GN's voxel default since 2026-12-05 (plugins/w2gn.py).

    h = q_0(x); h = act(convex_layers[j](h) + q_{j+1}(x)); f = final_layer(h) + 0.5*s*||x||^2,
    with q_k input-quadratic layers (convex in x) and non-negative hidden-path weights.
    """

    def __init__(
        self,
        dim: int,
        hidden: tuple[int, ...] | None = None,
        rank: int = 1,
        activation: str = "celu",
        strong_convexity: float = 1e-2,
        init_std: float = 0.1,
    ):
        super().__init__()
        check_positive(dim=dim, rank=rank)
        if hidden is None:
            hidden = (max(2 * dim, 64), max(2 * dim, 64), max(dim, 32))
        hidden = tuple(hidden)
        if len(hidden) < 1:
            raise NetConfigError("DenseICNN needs at least one hidden layer; pass hidden=(64,)")
        check_positive(**{f"hidden[{i}]": h for i, h in enumerate(hidden)})
        if strong_convexity < 0:
            raise NetConfigError(f"strong_convexity must be >= 0, got {strong_convexity}")
        self.dim = dim
        self.hidden = hidden
        self.strong_convexity = float(strong_convexity)
        self.act = _convex_activation(activation)
        self.quadratic_layers = nn.ModuleList(
            ConvexQuadratic(dim, h, rank=rank, init_std=init_std) for h in hidden
        )
        self.convex_layers = nn.ModuleList(
            nn.Linear(h_in, h_out, bias=False)
            for h_in, h_out in zip(hidden[:-1], hidden[1:], strict=True)
        )
        self.final_layer = nn.Linear(hidden[-1], 1, bias=False)
        # Start convex: hidden-path weights drawn non-negative (|N(0, std^2)|).
        with torch.no_grad():
            for layer in self._hidden_path():
                layer.weight.copy_(torch.randn_like(layer.weight).abs() * init_std)

    @classmethod
    def on_grid(
        cls, dim: int, hidden: tuple[int, ...] = (), init_std: float | None = None, **kwargs: Any
    ) -> DenseICNN:
        """A DenseICNN for a flattened voxel grid of `dim` values: widths (128, 128, 64) unless
        given, weights drawn at 1/sqrt(dim) unless given, which keeps the quadratic layers O(1)
        at the start where the vector default (0.1) would not."""
        std = dim**-0.5 if init_std is None else init_std
        return cls(dim, hidden=hidden or GRID_WIDTHS, init_std=std, **kwargs)

    def _hidden_path(self) -> list[nn.Linear]:
        return [*self.convex_layers, self.final_layer]

    def forward(self, x: Tensor) -> Tensor:
        """[N, dim] -> [N]; any [N, ...] with dim values a sample (voxels) is flattened first."""
        if x.dim() > 2 and x[0].numel() == self.dim:
            x = x.flatten(1)
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise NetConfigError(
                f"DenseICNN expects [N, {self.dim}] vectors, got {list(x.shape)}; "
                "check the dim the network was built with"
            )
        h = self.quadratic_layers[0](x)
        for quad, lin in zip(self.quadratic_layers[1:], self.convex_layers, strict=True):
            h = self.act(lin(h) + quad(x))
        out = self.final_layer(h).squeeze(1)
        return out + 0.5 * self.strong_convexity * (x**2).sum(dim=1)


class ConvICNN3D(_ConvexMixin, nn.Module):
    """Input-convex potential for voxels [N, C, D, H, W] -> [N] (for W2GN / amortized on 3D data).

    Level l works at resolution 1/2**l. A stem z = act(conv(x)), then per level
    z = act(Wz_l(z) + Wx_l(x_l)), where Wz_l (3x3x3, no bias) is the clamped non-negative hidden
    path, x_l = avgpool^l(x) and Wx_l any conv; between levels z and x are average-pooled by 2
    (linear, non-negative weights). Output: w . sum_space(z) with w >= 0, plus 0.5*s*||x||^2.

    Normalisation: none. Both terms are sums over voxels (the spatial sum is the global average
    pool times the voxel count), so f grows with the volume like ||x||^2 and grad f, the
    transport map, is on the scale of x per voxel (a mean pool would shrink the network's part of
    grad f by the voxel count). Grids need no divisibility: pooling uses ceil mode.
    """

    def __init__(
        self,
        in_channels: int,
        base: int = 16,
        levels: int = 2,
        strong_convexity: float = 1e-2,
        activation: str = "celu",
    ):
        super().__init__()
        check_positive(in_channels=in_channels, base=base, levels=levels)
        if strong_convexity < 0:
            raise NetConfigError(f"strong_convexity must be >= 0, got {strong_convexity}")
        self.in_channels = in_channels
        self.strong_convexity = float(strong_convexity)
        self.act = _convex_activation(activation)
        widths = [base * 2**level for level in range(levels)]
        self.stem = nn.Conv3d(in_channels, base, 3, padding=1)
        self.x_layers = nn.ModuleList(nn.Conv3d(in_channels, w, 3, padding=1) for w in widths)
        self.z_layers = nn.ModuleList(
            nn.Conv3d(w_in, w_out, 3, padding=1, bias=False)
            for w_in, w_out in zip([base, *widths[:-1]], widths, strict=True)
        )
        self.final_layer = nn.Linear(widths[-1], 1, bias=False)
        # Start convex, with a small hidden-path gain so the output does not blow up with depth.
        with torch.no_grad():
            for layer in self._hidden_path():
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(torch.rand_like(layer.weight) / fan_in)

    def _hidden_path(self) -> list[nn.Module]:
        return [*self.z_layers, self.final_layer]

    def forward(self, x: Tensor) -> Tensor:
        """[N, C, D, H, W] -> [N]."""
        check_voxels(x, self.in_channels, "ConvICNN3D")
        z = self.act(self.stem(x))
        xl = x
        for level, (wz, wx) in enumerate(zip(self.z_layers, self.x_layers, strict=True)):
            if level > 0:
                z = F.avg_pool3d(z, 2, ceil_mode=True)
                xl = F.avg_pool3d(xl, 2, ceil_mode=True)
            z = self.act(wz(z) + wx(xl))
        out = self.final_layer(z.sum(dim=(2, 3, 4))).squeeze(1)
        return out + 0.5 * self.strong_convexity * x.pow(2).flatten(1).sum(dim=1)


class QuadraticPlus(nn.Module):
    """Non-convex potential f(x) = net(x) + 0.5*exp(a)*||x||^2 (Amos 2023): wraps any scalar net.

    The quadratic keeps grad f close to a scaled identity while `net` is free; `net` may return
    [N] or [N, 1]; ||x||^2 sums over every non-batch axis (vectors and voxels). `a` is learned
    (amortized conjugates) or, with `learn_scale=False`, fixed (ENOT's Brenier potentials).
    """

    def __init__(self, net: nn.Module, log_scale_init: float = 0.0, learn_scale: bool = True):
        super().__init__()
        self.net = net
        log_scale = torch.tensor(float(log_scale_init))
        if learn_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    def forward(self, x: Tensor) -> Tensor:
        out = self.net(x).reshape(x.shape[0], -1)
        if out.shape[1] != 1:
            raise NetConfigError(
                f"QuadraticPlus wraps a scalar net, but it returned {out.shape[1]} values per "
                "sample; give it a net with one output"
            )
        return out[:, 0] + 0.5 * self.log_scale.exp() * x.pow(2).flatten(1).sum(dim=1)


def potential_gradient(f: nn.Module, x: Tensor, create_graph: bool = False) -> Tensor:
    """grad_x sum f(x), batched: the transport map of a potential (vectors and voxels).

    With create_graph=False the result is detached (evaluation, targets); with True it keeps the
    graph to f's parameters and, when x itself requires grad, to x (cycle losses).
    """
    with torch.enable_grad():
        xg = x if create_graph and x.requires_grad else x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(f(xg).sum(), xg, create_graph=create_graph)
    return grad if create_graph else grad.detach()
