"""OTM: generative modeling with optimal transport maps (Rout, Korotin, Burnaev, ICLR 2022).

A potential psi and a map T play the saddle of DESIGN §2,
`L(psi, T) = mean[<Q(x), T(x)>/D - psi(T(x)) + psi(y)]`: psi minimises L, T maximises it,
with `t_iters` T steps per psi step. Q is the identity when source and target share a shape;
for a latent source (pair `noise-D`: x is C x S^3 noise, y a C x G^3 digit) Q is the trilinear
upsampling of x to the target grid and T is a UNet on Q(x) without the residual connection.

Optional gradient-optimality regularizer on the psi loss (`lam_go` > 0). At the optimum T
maximises <Q(x), t>/D - psi(t), so grad psi(T(x)) = Q(x)/D; the regularizer is that condition
averaged over the batch, in per-element units: `R = || D mean_b grad psi(T(x)) - mean_b Q(x) ||
/ sqrt(D)`, the DESIGN form with our 1/D-scaled inner product.

For the quadratic cost this is NOT's saddle with psi(y) = ||y||^2/(2D) - f(y) (and half its
cost), so both must find the same map: tests/test_crosscheck.py checks that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from otzoo.data.spec import PairSpec
from otzoo.errors import ConfigError
from otzoo.nets import MLP, ResNet3D, UNet3D
from otzoo.registry import register_solver
from otzoo.solver import Batches, PairInfo, Solver, SolverConfig
from otzoo_plugins.neural_ot import saddle_vector_presets


@dataclass(frozen=True)
class OTMConfig(SolverConfig):
    t_iters: int = 2  # T steps per psi step (reference: 2 for generation, 5 for restoration)
    lr_t: float = 2e-4
    lr_psi: float = 2e-4
    beta1: float = 0.0  # Adam betas (reference: 0, 0.9)
    beta2: float = 0.9
    lam_go: float = 0.0  # gradient-optimality weight (reference: 10 generation, 0 restoration)
    t_base: int = 16  # UNet3D width
    t_depth: int = 2
    t_residual: bool = True  # identity-initialised map (equal shapes only)
    t_clamp: bool = False  # voxels: clip T's output to the data range [-1, 1]
    psi_base: int = 16  # ResNet3D potential width
    psi_levels: int = 2
    hidden: tuple[int, ...] = (128, 128)  # MLP widths for vector data
    lr_decay_steps: int = 0  # cosine decay of both lrs to 1e-4 x over this many steps; 0: constant


_PRESETS = {
    "tiny": {"t_iters": 2, "t_base": 8, "t_depth": 1, "psi_base": 8, "psi_levels": 1},
    "quick": {"t_iters": 2, "t_base": 8, "psi_base": 8, "lr_t": 3e-4, "lr_psi": 3e-4},
    "full": {"t_iters": 2, "t_base": 48, "t_depth": 3, "psi_base": 48},
}


class _Upsampled(nn.Module):
    """T(z) = UNet(Q(z)): latent noise upsampled to the target grid, then mapped."""

    def __init__(self, net: UNet3D, grid: tuple[int, ...]) -> None:
        super().__init__()
        self.net, self.grid = net, grid

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(upsample(z, self.grid))


def upsample(z: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """Q(z): trilinear resize of [N, C, d, h, w] to [N, C, *grid] (identity when equal)."""
    if tuple(z.shape[2:]) == tuple(grid):
        return z
    return F.interpolate(z, size=grid, mode="trilinear", align_corners=False)


@register_solver("otm")
class OTM(Solver):
    summary = "OT maps (Rout et al. 2022): map T vs potential psi; latent noise -> images too"
    tags = frozenset({"voxel", "vector", "neural"})
    Config = OTMConfig
    presets = _PRESETS

    def __init__(self, config: OTMConfig, info: PairInfo, device: torch.device) -> None:
        super().__init__(config, info, device)
        self.equal = info.x_shape == info.y_shape
        self.T, self.psi = self._build_nets(config, info)
        self.modules = {"T": self.T.to(device), "psi": self.psi.to(device)}
        betas = (config.beta1, config.beta2)
        self.optimizers = {
            "T": torch.optim.Adam(self.T.parameters(), lr=config.lr_t, betas=betas),
            "psi": torch.optim.Adam(self.psi.parameters(), lr=config.lr_psi, betas=betas),
        }

    @classmethod
    def pair_presets(cls, spec: PairSpec, preset: str) -> dict[str, Any]:
        return saddle_vector_presets(spec, preset, ("lr_t", "lr_psi"))

    def _build_nets(self, c: OTMConfig, info: PairInfo) -> tuple[nn.Module, nn.Module]:
        if info.kind == "vector":
            if not self.equal:
                raise ConfigError(
                    f"otm on vectors needs source and target of one dimension (got {info.x_dim} "
                    f"and {info.y_dim}); latent sources are supported for voxel pairs (noise-D)"
                )
            T = MLP(info.x_dim, info.y_dim, hidden=c.hidden, residual=c.t_residual)
            return T, MLP(info.y_dim, 1, hidden=c.hidden)
        c_in, c_out = info.x_shape[0], info.y_shape[0]
        psi = ResNet3D(c_out, base=c.psi_base, levels=c.psi_levels)
        clamp = (-1.0, 1.0) if c.t_clamp else None
        if self.equal:
            unet = UNet3D(
                c_in, c_out, base=c.t_base, depth=c.t_depth, residual=c.t_residual, clamp=clamp
            )
            return unet, psi
        if c_in != c_out:
            raise ConfigError(
                f"otm: latent source has {c_in} channels but the target {c_out}; <Q(z), T(z)> "
                "needs one channel count (noise-D pairs draw the target's count)"
            )
        unet = UNet3D(c_in, c_out, base=c.t_base, depth=c.t_depth, residual=False, clamp=clamp)
        return _Upsampled(unet, tuple(info.y_shape[1:])), psi

    def q(self, x: torch.Tensor) -> torch.Tensor:
        """Q(x): x itself for equal shapes, else x upsampled to the target grid."""
        return x if self.equal else upsample(x, tuple(self.info.y_shape[1:]))

    def _inner(self, x: torch.Tensor, tx: torch.Tensor) -> torch.Tensor:
        """mean over the batch of <Q(x), T(x)> / D."""
        return (self.q(x) * tx).flatten(1).mean(dim=1).mean()

    def _go_penalty(self, x: torch.Tensor, tx: torch.Tensor) -> torch.Tensor:
        """|| D mean_b grad psi(T(x)) - mean_b Q(x) || / sqrt(D), differentiable in psi."""
        tx = tx.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.psi(tx).sum(), tx, create_graph=True)
        d = self.info.y_dim
        gap = d * grad.mean(dim=0) - self.q(x).mean(dim=0)
        return gap.flatten().norm() / math.sqrt(d)

    def step(self, batches: Batches) -> dict[str, float]:
        self.schedule_lr(self.config.lr_decay_steps)
        self.psi.requires_grad_(False)
        for _ in range(self.config.t_iters):
            x = batches.x()
            tx = self.T(x)
            loss_t = self.psi(tx).mean() - self._inner(x, tx)  # -L up to the psi(y) term
            self.optimizers["T"].zero_grad(set_to_none=True)
            loss_t.backward()
            self.optimizers["T"].step()
        self.psi.requires_grad_(True)

        x, y = batches.x(), batches.y()
        with torch.no_grad():
            tx = self.T(x)
        loss_psi = self._inner(x, tx) - self.psi(tx).mean() + self.psi(y).mean()
        logs = [loss_t.detach(), loss_psi.detach()]
        if self.config.lam_go > 0:
            go = self._go_penalty(x, tx)
            loss_psi = loss_psi + self.config.lam_go * go
            logs.append(go.detach())
        self.optimizers["psi"].zero_grad(set_to_none=True)
        loss_psi.backward()
        self.optimizers["psi"].step()
        names = ["loss_t", "loss_psi", "go"][: len(logs)]
        return dict(zip(names, torch.stack(logs).tolist(), strict=True))  # one host sync

    def transport(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return self.T(x)
