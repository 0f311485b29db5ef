"""OTM: generative modeling with optimal transport maps (Rout, Korotin, Burnaev, ICLR 2022).

A potential psi and a map T play the saddle of plugins/saddle.py with
`L(psi, T) = mean[<Q(x), T(x)>/D - psi(T(x)) + psi(y)]`: psi minimises L, T maximises it,
with `t_iters` T steps per psi step. Q is the identity when source and target share a shape;
for a latent source (pair `noise-D`: x is C x S^3 noise, y a C x G^3 digit) Q is the trilinear
upsampling of x to the target grid and T is a UNet on Q(x) without the residual connection.

Optional gradient-optimality regularizer on the psi loss (`lam_go` > 0). At the optimum T
maximises <Q(x), t>/D - psi(t), so grad psi(T(x)) = Q(x)/D; the regularizer is that condition
averaged over the batch, in per-element units: `R = || D mean_b grad psi(T(x)) - mean_b Q(x) ||
/ sqrt(D)`, the paper's form with our 1/D-scaled inner product.

`psi_quadratic` writes psi as a free net plus ||t||^2 / (2D): T's loss becomes
||T(x) - Q(x)||^2 / (2D) - net(T(x)) + const, the quadratic cost, which a bounded net alone
cannot express (with the plain inner product a generator's outputs grow without bound until psi
learns to price them away).

For the quadratic cost this is NOT's saddle with psi(y) = ||y||^2/(2D) - f(y) (and half its
cost), so both must find the same map: tests/test_crosscheck.py checks that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from otzoo.data.pairs import DataConfig
from otzoo.data.spec import PairSpec
from otzoo.errors import ConfigError, check_value
from otzoo.nets import Generator3D, UNet3D
from otzoo.nets.common import NORMS
from otzoo.nets.icnn import QuadraticPlus, potential_gradient
from otzoo.solver import PairInfo
from otzoo_plugins.saddle import (
    SaddleConfig,
    SaddleSolver,
    by_rotation,
    map_net,
    potential_net,
    saddle_vector_presets,
)

T_NETS = ("unet", "generator")


@dataclass(frozen=True)
class OTMConfig(SaddleConfig):
    t_iters: int = 2  # T steps per psi step (reference: 2 for generation, 5 for restoration)
    lr_t: float = 2e-4  # Adam lr of the map T (reference 2e-4)
    lr_psi: float = 2e-4  # Adam lr of the potential psi (reference 2e-4)
    beta1: float = 0.0  # Adam betas (reference: 0, 0.9)
    beta2: float = 0.9  # Adam second-moment decay
    lam_go: float = 0.0  # gradient-optimality weight (reference: 10 generation, 0 restoration)
    psi_base: int = 16  # ResNet3D potential width
    psi_levels: int = 2  # ResNet3D levels (each halves the grid)
    psi_quadratic: bool = False  # psi = net + ||t||^2 / (2D): the quadratic cost made explicit
    psi_norm: str = "group"  # potential's normalisation: group | none (as not's f_norm)
    color_blind: bool = False  # colored voxels: psi reads hue-plane coordinates (ColorBlind)
    t_net: str = "unet"  # a latent source's map: unet (on Q(x)) | generator (decodes x)

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("beta1", "beta2"):
            check_value(key, getattr(self, key), lambda v: 0 <= v < 1, "a number in [0, 1)")
        check_value("lam_go", self.lam_go, lambda v: v >= 0, "a number >= 0 (0: off)")
        check_value("psi_norm", self.psi_norm, lambda v: v in NORMS, " | ".join(NORMS))
        check_value("t_net", self.t_net, lambda v: v in T_NETS, " | ".join(T_NETS))


_PRESETS = {
    "tiny": {"t_iters": 2, "t_base": 8, "t_depth": 1, "psi_base": 8, "psi_levels": 1},
    "quick": {"t_iters": 2, "t_base": 8, "psi_base": 8, "lr_t": 3e-4, "lr_psi": 3e-4},
    "full": {"t_iters": 2, "t_base": 48, "t_depth": 3, "psi_base": 48},
}


# The rotated cells' own settings on top of the rotated preset (3-5, one thread, Intel Xeon,
# 2026-12-06, seeds 0 / 1; docs/results.md, "Rotation z: `otm`" and "3D rotations"). z-rotated
# extruded digits: the potential at 6e-4 (AMD, 13 min: 0.83 / 0.86 against 0.77 / 0.86; a faster
# map tied it here: batch 16 and lr_t 6e-4 0.89 / 0.83, lr_t 6e-4 alone 0.86 / 0.86, against
# 0.82 / 0.90). z-rotated point clouds, where 6e-4 lets the potential outrun the map (0.81 at
# step 250, 0.55 at 440): batch 16 with the map at 6e-4, 1,100 steps, 0.89 / 0.86 against 0.81 /
# 0.80, fid 3.4 / 5.1 against 7.0 / 7.6; 950 steps fit 15 training minutes. 3D rotations, where
# the potential stays flat (its slope at T(x) is the quadratic's alone): both at 6e-4 and batch
# 16, 950 steps (12-13 min), extruded 0.39 / 0.53 against 0.29 (AMD) / 0.42, point clouds 0.33 /
# 0.36 against 0.28 (AMD) / 0.29. There the steps were what limited: in bf16 autocast (2026-12-07,
# Intel Xeon with AMX, ~160 steps a minute against ~79) 15 minutes give 0.75 / 0.76 and 0.45 /
# 0.52, the map moving 3-4x as far. The machine's rate varies (137-167 steps a minute), so the
# cells take 1,900 steps, ~13 minutes: 0.57 / 0.66 and 0.40 / 0.46. (On z-rotated extruded digits
# bf16 only got to the same plateau sooner: 0.86 / 0.75 at 15 minutes, 0.85 / 0.85 at 6-8.) In
# those steps the point clouds' potential learns best at 1.2e-3 (0.65 / 0.65 against 0.40 / 0.46;
# 2.4e-3 0.49 on seed 0); on extruded digits 1.2e-3 ends lower (0.39 against 0.57, seed 0).
_FASTER_MAP: dict[str, Any] = {"batch_size": 16, "steps": 950, "lr_t": 6e-4}
_FASTER_POTENTIAL: dict[str, Any] = {"lr_psi": 6e-4}
_BF16_STEPS: dict[str, Any] = {"amp": "bf16", "steps": 1900}
_3D = _FASTER_MAP | _FASTER_POTENTIAL | _BF16_STEPS
_ROTATED_CELLS: dict[tuple[str, str], dict[str, Any]] = {
    ("z", "extruded"): _FASTER_POTENTIAL,
    ("z", "pointcloud"): _FASTER_MAP,
    ("3d", "extruded"): _3D,
    ("3d", "pointcloud"): _3D | {"lr_psi": 1.2e-3},
}


# Generation from latent noise (noise-5, one thread, Intel Xeon, 2026-12-07; docs/results.md,
# "Generation from noise"). T decodes the latent, as the reference's T does: with an EMA of 0.99
# against a potential without GroupNorm, 1,500 steps (~28 training minutes) end at 0.91 / 0.92
# target accuracy (seeds 0 / 1), fid 15.3 / 13.4 (floors 21.4 / 12.75), lit share 0.18. With
# GroupNorm (seed 0) it draws fives sooner and collapses: 0.74 / 1.00 / 0.24 at 6 / 12 / 15
# minutes, fid 156 / 133 / 630. The reference's gradient-optimality term (lam_go=10) kept the
# decoder at 0.15 after 8 minutes, lit share 0.95: it asks psi's mean slope at T's outputs to match
# the upsampled noise's mean, ~0, and psi's slope there fell to 1e-5 per voxel in 100 steps while
# the cost pulled at 5e-5 away from the fives (without it 1e-4 to 2e-3). The UNet on the
# upsampled latent made no five with any recipe tried. One hue a sample (t_hue_plane=true) makes
# the fives more one-colored (purity 0.87 / 0.80 against 0.62 on seed 0) and swings after reaching
# 0.90 at ~12 minutes (0.70 / 0.79, fid 83 / 81 at the end): an option.
_NOISE: dict[str, Any] = {
    "t_net": "generator",
    "t_base": 16,
    "psi_norm": "none",
    "ema": 0.99,
    "steps": 1500,
}


class _Upsampled(nn.Module):
    """T(z) = UNet(Q(z)): latent noise upsampled to the target grid, then mapped."""

    def __init__(self, net: UNet3D, grid: tuple[int, ...]) -> None:
        super().__init__()
        self.net, self.grid = net, grid

    def forward(self, z: Tensor) -> Tensor:
        return self.net(upsample(z, self.grid))


def upsample(z: Tensor, grid: tuple[int, ...]) -> Tensor:
    """Q(z): trilinear resize of [N, C, d, h, w] to [N, C, *grid] (identity when equal)."""
    if tuple(z.shape[2:]) == tuple(grid):
        return z
    return F.interpolate(z, size=grid, mode="trilinear", align_corners=False)


class OTM(SaddleSolver):
    summary = "OT maps (Rout et al. 2022): map T vs potential psi; latent noise -> images too"
    tags = frozenset({"voxel", "vector", "neural"})
    Config = OTMConfig
    presets = _PRESETS
    potential_key = "psi"
    real_sign = -1.0  # psi is low on real targets: T minimises it
    equal_shapes = False  # a latent source (noise-D) maps to images of another shape

    @classmethod
    def pair_presets(cls, spec: PairSpec, preset: str, data: DataConfig) -> dict[str, Any]:
        """Digit pairs, quick: `not`'s EMA map and R1 plus an explicit quadratic in psi (measured
        on 3-5, 10 min, one thread; 0.74 target accuracy before: docs/results.md,
        "`otm`"), and T's context FiLM and hue plane (3-5, 350 steps, 2026-12-04, seeds 0 / 1:
        target accuracy 0.95 / 0.98 against 0.91 / 0.94, purity 0.907 / 0.974 against 0.827 /
        0.840, fid 21.8 / 9.3 against 24.3 / 14.2; the plane alone: seed 0 worse everywhere).
        On unrotated digits batch 4 over 2,100 steps (8 minutes at ~265 steps a minute) with an
        EMA of 0.995 (3-5, one thread, AMD, 2026-12-05, seeds 0 / 1 side by side): 0.95 reached
        at 3.0 / 3.0 minutes (batch 16: 6.0 / 5.0; 32: 9.1 / 7.6); at 8 minutes 0.99 / 0.98,
        purity 0.955 / 0.976, worst color 0.96 / 0.96, fid 10.1 / 11.2, lit share 0.212 / 0.207
        (batch 16 at 10 minutes: 0.97 / 0.95, 0.930 / 0.967, 0.93 / 0.92, 9.1 / 11.0, 0.233 /
        0.218; docs/results.md, "Half the batch, twice"). Rotated digits keep batch 32
        (`by_rotation`), and there take `not`'s rotated settings, no R1 and real sources as
        negatives, and a potential twice as wide, over 440 steps (~15 minutes at ~29 steps a
        minute): rotation z, one thread, 2026-12-06, seeds 0 / 1, 13 minutes: 0.77 / 0.86 target
        accuracy (psi_base 8: 0.54 / 0.68; with R1: 0.12 / 0.29), worst color 0.64 / 0.65, fid
        10.8 / 7.7, purity 0.983 / 0.981, lit share 0.231 / 0.233. On z-rotated extruded digits
        the potential learns twice as fast (lr_psi 6e-4; seeds 0 / 1: 0.83 / 0.86, worst color
        0.74 / 0.74, fid 7.4 / 8.7, lit share 0.227 / 0.240); on z-rotated point clouds that lr
        peaks at 0.81 by step 250 and falls to 0.55 by 440 as the potential outruns the map
        (seed 0), so there the map learns faster instead (batch 16, lr_t 6e-4, 950 steps); under
        3D rotations both do, in bf16 autocast for 2.1x the steps, the point clouds' potential
        at 1.2e-3 (`_ROTATED_CELLS`); docs/results.md, "Rotation z: `otm`" and "3D rotations".
        Latent sources (noise-D), quick: T decodes the latent (`t_net=generator`, as the
        reference's T does) against a potential without GroupNorm, for `_NOISE`'s steps (~30
        training minutes); the UNet on the upsampled latent made no five with any recipe tried
        (docs/results.md, "Generation from noise"). Other pairs keep the reference form:
        restoration was measured with it."""
        if spec.kind == "noise" and preset == "quick":
            return dict(_NOISE)
        if spec.kind == "digits" and preset == "quick":
            return {
                "psi_quadratic": True,
                "ema": 0.98,
                "r1": 300.0,
                "t_context": True,
                "t_hue_plane": True,
                **by_rotation(
                    data,
                    unrotated={"batch_size": 4, "steps": 2100, "ema": 0.995},
                    rotated={"r1": 0.0, "neg_source": 1.0, "psi_base": 16, "steps": 440},
                ),
                **_ROTATED_CELLS.get((data.rotation, data.style), {}),
            }
        return saddle_vector_presets(spec, preset, ("lr_t", "lr_psi"))

    @property
    def equal(self) -> bool:
        return self.info.x_shape == self.info.y_shape

    def build_nets(self, c: OTMConfig, info: PairInfo) -> tuple[nn.Module, nn.Module]:
        if info.kind == "vector" and not self.equal:
            raise ConfigError(
                f"otm on vectors needs source and target of one dimension (got {info.x_dim} "
                f"and {info.y_dim}); latent sources are supported for voxel pairs (noise-D)"
            )
        if self.equal and c.t_net == "generator":
            raise ConfigError(
                "t_net=generator decodes a latent source (noise-D pairs); this pair's source "
                "is shaped like its target: use --set t_net=unet"
            )
        if info.kind == "vector":  # (built in this order since issue 4: seeded runs reproduce)
            T = map_net(c, info)
            return T, self._potential(c, info)
        psi = self._potential(c, info)
        if self.equal:
            return map_net(c, info), psi
        c_in, c_out = info.x_shape[0], info.y_shape[0]
        if c_in != c_out:
            raise ConfigError(
                f"otm: latent source has {c_in} channels but the target {c_out}; <Q(z), T(z)> "
                "needs one channel count (noise-D pairs draw the target's count)"
            )
        grid = tuple(info.y_shape[1:])
        if c.t_net == "generator":  # t_hue_plane: one hue a sample, drawn from the latent
            gen = Generator3D(info.x_dim, c_out, grid, c.t_base, c.t_depth, one_color=c.t_hue_plane)
            return gen, psi
        if c.t_hue_plane:
            raise ConfigError(
                "t_hue_plane=true: a latent source has no hue to keep; use --set "
                "t_hue_plane=false for noise pairs (or t_net=generator, which draws one)"
            )
        clamp = (-1.0, 1.0) if c.t_clamp else None
        unet = UNet3D(c_in, c_out, base=c.t_base, depth=c.t_depth, residual=False, clamp=clamp)
        return _Upsampled(unet, grid), psi

    @staticmethod
    def _potential(c: OTMConfig, info: PairInfo) -> nn.Module:
        psi = potential_net(
            info, c.psi_base, c.psi_levels, c.hidden, c.psi_norm, color_blind=c.color_blind
        )
        if c.psi_quadratic:
            return QuadraticPlus(psi, -math.log(info.y_dim), learn_scale=False)
        return psi

    def potential_lr(self) -> float:
        return self.config.lr_psi

    def optimizer(self, module: nn.Module, lr: float) -> torch.optim.Optimizer:
        betas = (self.config.beta1, self.config.beta2)
        return torch.optim.Adam(module.parameters(), lr=lr, betas=betas)

    def q(self, x: Tensor) -> Tensor:
        """Q(x): x itself for equal shapes, else x upsampled to the target grid."""
        return x if self.equal else upsample(x, tuple(self.info.y_shape[1:]))

    def _inner(self, x: Tensor, tx: Tensor) -> Tensor:
        """mean over the batch of <Q(x), T(x)> / D."""
        return (self.q(x) * tx).flatten(1).mean(dim=1).mean()

    def _go_penalty(self, x: Tensor, tx: Tensor) -> Tensor:
        """|| D mean_b grad psi(T(x)) - mean_b Q(x) || / sqrt(D), differentiable in psi."""
        grad = potential_gradient(self.potential, tx.detach(), create_graph=True)
        d = self.info.y_dim
        gap = d * grad.mean(dim=0) - self.q(x).mean(dim=0)
        return gap.flatten().norm() / math.sqrt(d)

    def map_loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        tx = self.T(x)
        return self.potential(tx).mean() - self._inner(x, tx), {}  # -L up to the psi(y) term

    def potential_loss(
        self, x: Tensor, tx: Tensor, pot_tx: Tensor, pot_y: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        loss = self._inner(x, tx) - pot_tx.mean() + pot_y.mean()
        if self.config.lam_go <= 0:
            return loss, {}
        go = self._go_penalty(x, tx)
        return loss + self.config.lam_go * go, {"go": go}
