"""The map-vs-potential saddle that NOT and OTM share (docs/design.md, "Saddle solvers").

One outer step: `t_iters` map steps on fresh source batches with the potential frozen (each
followed by the EMA update of the map, when `ema` > 0), then one potential step on a fresh
source and target batch with the map frozen. A subclass says only what differs: its two
losses, its networks (through `map_net` / `potential_net`, the one voxel/vector switch) and
its optimizers. The potential's module key (and its loss's log name, `loss_<key>`) is the
subclass's `potential_key`: "f" for NOT, "psi" for OTM.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from otzoo.data.pairs import DataConfig
from otzoo.data.spec import PairSpec
from otzoo.data.transforms import color_mixed
from otzoo.data.vectors import vector_dim
from otzoo.errors import ConfigError, check_value
from otzoo.nets import MLP, PatchEmbed, ResNet3D, UNet3D
from otzoo.nets.common import ema_copy, ema_update
from otzoo.nets.unet3d import ColorBlind
from otzoo.solver import Batches, PairInfo, Solver, SolverConfig


@dataclass(frozen=True)
class SaddleConfig(SolverConfig):
    t_iters: int = 2  # map steps per potential step
    lr_t: float = 2e-4  # Adam lr of the map T
    t_base: int = 16  # map width (UNet3D; otm's latent Generator3D too)
    t_depth: int = 2  # map levels (each halves the grid; UNet3D or Generator3D)
    t_residual: bool = True  # identity-initialised map: x + head(x), head starts at zero
    t_clamp: bool = False  # voxels: clip T's output to the data range [-1, 1]
    t_context: bool = False  # voxels: FiLM T's stages from the input's per-channel mean
    t_hue_plane: bool = False  # voxels: T moves each voxel only along gray and the input's hue
    hidden: tuple[int, ...] = (128, 128)  # MLP widths for vector data
    ema: float = 0.0  # >0: transport with an exponential moving average of T (damps swings)
    r1: float = 0.0  # >0: gradient penalty r1/2 E||grad potential(y)||^2 on real targets
    r2: float = 0.0  # >0: the same penalty at the map's outputs T(x) (R2)
    # (the potential ranks each two-colored copy below its real target by the margin it puts
    # between real and mapped samples, a hinge of this weight: a digit has one color)
    neg_color: float = 0.0  # >0: voxels: two-colored real targets (color_mixed) as negatives
    # (the same hinge with real sources: the potential ranks a real source below the real
    # targets by at least the margin it gives the map's outputs, so "unaltered digit" is not
    # what it rewards; equal source and target shapes)
    neg_source: float = 0.0  # >0: real source samples as negatives (hinge as neg_color)

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("r1", "r2", "neg_color", "neg_source"):
            check_value(key, getattr(self, key), lambda v: v >= 0, "a number >= 0 (0: off)")


class VectorMap(nn.Module):
    """Vector map with optional noise inputs, called like UNet3D: T(x) or T(x, z). Residual
    (identity at init: the last layer starts at zero) when input and output sizes agree."""

    def __init__(self, d_in: int, d_out: int, hidden: tuple[int, ...], noise: int, residual: bool):
        super().__init__()
        self.noise = noise
        self.residual = residual and d_in == d_out
        self.net = MLP(d_in + noise, d_out, hidden=hidden)
        if self.residual:
            nn.init.zeros_(self.net.head.weight)
            nn.init.zeros_(self.net.head.bias)

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        h = self.net(torch.cat([x, z], dim=1) if self.noise else x)
        return x + h if self.residual else h


def map_net(c: SaddleConfig, info: PairInfo, noise_channels: int = 0) -> nn.Module:
    """The map T between equal shapes: a UNet3D for voxels, an MLP for vectors."""
    if info.kind == "voxel":
        return UNet3D(
            info.x_shape[0],
            info.y_shape[0],
            base=c.t_base,
            depth=c.t_depth,
            noise_channels=noise_channels,
            residual=c.t_residual,
            clamp=(-1.0, 1.0) if c.t_clamp else None,
            context=c.t_context,
            hue_plane=c.t_hue_plane,
        )
    return VectorMap(info.x_dim, info.y_dim, c.hidden, noise_channels, c.t_residual)


def potential_net(
    info: PairInfo,
    base: int,
    levels: int,
    hidden: tuple[int, ...],
    norm: str = "group",
    activation: str = "silu",
    context: bool = False,
    voxel_net: str = "conv",
    patch: int = 0,
    color_blind: bool = False,
) -> nn.Module:
    """The potential on target samples: a ResNet3D for voxels (`context`: FiLM from the input's
    channel means), an MLP (of `activation`) for vectors, and for voxels with
    `voxel_net="dense"` too, on the flattened grid (a weight per voxel), after a `PatchEmbed`
    of `patch` features per 2^3 patch when `patch` > 0. `color_blind` (colored voxels): the
    net reads each voxel's hue-plane coordinates (`ColorBlind`)."""
    channels = info.y_shape[0]
    if ColorBlind.applies(info.kind, channels, color_blind):
        coords = PairInfo(info.kind, (2, *info.x_shape[1:]), (2, *info.y_shape[1:]))
        return ColorBlind(
            potential_net(coords, base, levels, hidden, norm, activation, context, voxel_net, patch)
        )
    if info.kind == "voxel" and voxel_net == "dense" and patch > 0:
        embed = PatchEmbed(channels, patch, activation=activation)
        features = embed.out_features(tuple(info.y_shape[1:]))
        return MLP(features, 1, hidden, activation, flatten=True, embed=embed)
    if info.kind == "voxel" and voxel_net == "dense":
        return MLP(info.y_dim, 1, hidden=hidden, activation=activation, flatten=True)
    if info.kind == "voxel":
        return ResNet3D(info.y_shape[0], base=base, levels=levels, norm=norm, context=context)
    return MLP(info.y_dim, 1, hidden=hidden, activation=activation)


def by_rotation(
    data: DataConfig, unrotated: dict[str, Any], rotated: dict[str, Any]
) -> dict[str, Any]:
    """The quick presets' digit settings of `not` and `otm` that differ with the data's rotation.
    Unrotated: a small batch and the steps that fill the training minutes; a step of batch 16
    costs half as much as one of 32 and teaches the map about as much (3-5, one thread,
    2026-12-05, seeds 0 / 1: 0.95 reached at 3.0 / 8.0 minutes by `not` against 7.6 / 9.1, at
    6.0 / 5.0 by `otm` against 9.1 / 7.6), and halving it again pays too (`not` batch 8, `otm`
    4, each with a longer EMA: 0.95 at 3.0 / 3.0 minutes for both). Rotated: batch 32, since
    there `not`'s potential learns far less per step at 16 (rotation z, `r1=0`, 15 minutes:
    0.34 target accuracy after 1,081 steps, against 0.78 in the same minutes at 32, with about
    half the steps), no R1 and real sources as negatives (docs/results.md, "Rotation z: `not`"
    and "Rotation z: `otm`")."""
    return dict(unrotated if data.rotation == "none" else rotated)


def saddle_vector_presets(spec: PairSpec, preset: str, lr_keys: tuple[str, ...]) -> dict[str, Any]:
    """Vector settings of the NOT/OTM saddle, tuned on the W2 benchmark (benchmarks/w2_bench.md)
    for ~2-3 CPU minutes per dimension: 3-layer MLPs, batch 256. Below dim 16, K_T = 3, lr 1e-3
    with a cosine decay over the run (which halved UVP at dims 2-8); from dim 16 on, K_T = 10
    at a constant lr 3e-4 (K_T = 3, lr 1e-3 ended worse than the identity at dim 32, and the
    decay cost 15-25% there: the run is still far from converged when the lr dies). `tiny`
    stays tiny."""
    dim = vector_dim(spec)
    if dim is None or preset == "tiny":
        return {}
    low = dim < 16
    steps, t_iters, lr = (12000, 3, 1e-3) if low else (4800, 10, 3e-4)
    return {
        "batch_size": 256,
        "hidden": (128, 128, 128),
        "steps": steps,
        "lr_schedule": "cosine" if low else "constant",
        "t_iters": t_iters,
        **dict.fromkeys(lr_keys, lr),
    }


def squared_slope(values: Tensor, points: Tensor) -> Tensor:
    """Mean over the batch of ||d values / d points||^2, keeping the graph (a penalty to train
    with); `values` are a potential's per-sample values at `points`, which require grad. At real
    targets (R1, Mescheder et al. 2018) it keeps the potential flat around the data, so it cannot
    reward what the data never shows (e.g. a faint fog over the background) and the saddle swings
    less; at the map's outputs (R2) it flattens the slope T climbs off the data."""
    (grad,) = torch.autograd.grad(values.sum(), points, create_graph=True)
    return grad.pow(2).flatten(1).sum(dim=1).mean()


class SaddleSolver(Solver):
    """A map T and a potential playing a saddle; subclasses give the losses and networks."""

    potential_key: ClassVar[str] = "f"
    real_sign: ClassVar[float] = 1.0  # +1: the potential is high on real targets (NOT); -1: low
    noise_channels: int = 0  # extra noise inputs of T (stochastic maps)

    def __init__(self, config: SaddleConfig, info: PairInfo, device: torch.device) -> None:
        super().__init__(config, info, device)
        if config.neg_color > 0 and (info.kind != "voxel" or info.y_shape[0] < 2):
            raise ConfigError(
                f"neg_color={config.neg_color}: two-colored negatives need voxel targets with >= 2 "
                "channels (colored digits); use --set neg_color=0 here"
            )
        if config.neg_source > 0 and info.x_shape != info.y_shape:
            raise ConfigError(
                f"neg_source={config.neg_source}: real sources as negatives need sources shaped "
                f"like the targets (here {info.x_shape} and {info.y_shape}); use --set "
                "neg_source=0 here"
            )
        T, potential = self.build_nets(config, info)
        self.T, self.potential = T.to(device), potential.to(device)
        self.modules = {"T": self.T, self.potential_key: self.potential}
        self.T_eval = self.T
        if config.ema > 0:
            self.T_eval = ema_copy(self.T)
            self.modules["T_ema"] = self.T_eval
        self.optimizers = {
            "T": self.optimizer(self.T, config.lr_t),
            self.potential_key: self.optimizer(self.potential, self.potential_lr()),
        }

    @abstractmethod
    def build_nets(self, config: Any, info: PairInfo) -> tuple[nn.Module, nn.Module]:
        """(T, potential), through `map_net` / `potential_net` where they fit."""

    @abstractmethod
    def potential_lr(self) -> float: ...

    @abstractmethod
    def optimizer(self, module: nn.Module, lr: float) -> torch.optim.Optimizer: ...

    @abstractmethod
    def map_loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """T's loss on a source batch (minimised over T), and tensors to log."""

    @abstractmethod
    def potential_loss(
        self, x: Tensor, tx: Tensor, pot_tx: Tensor, pot_y: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The potential's loss (minimised over it) for T(x) computed without gradients.
        `pot_tx` and `pot_y` are the potential at T(x) and at the real targets, computed once by
        the step (with gradients) and shared with the negatives' hinge."""

    def map_for_potential(self, x: Tensor) -> Tensor:
        return self.T(x)

    def step(self, batches: Batches) -> dict[str, float]:
        self.potential.requires_grad_(False)
        for _ in range(self.config.t_iters):
            loss_t, map_logs = self.map_loss(batches.x())
            self.optimizers["T"].zero_grad(set_to_none=True)
            loss_t.backward()
            self.optimizers["T"].step()
            if self.T_eval is not self.T:
                ema_update(self.T_eval, self.T, self.config.ema)
        self.potential.requires_grad_(True)

        x, y = batches.x(), batches.y()
        with torch.no_grad():
            tx = self.map_for_potential(x)
        # R1 / R2 differentiate these same values by their points: the points they penalise
        # track gradients, so the one pass per batch serves the penalties too
        y_points = y.detach().requires_grad_(self.config.r1 > 0)
        tx.requires_grad_(self.config.r2 > 0)
        pot_tx, pot_y = self.potential(tx), self.potential(y_points)
        loss_p, potential_logs = self.potential_loss(x, tx, pot_tx, pot_y)
        for key, points, values in (("r1", y_points, pot_y), ("r2", tx, pot_tx)):
            weight = getattr(self.config, key)
            if weight > 0:
                penalty = squared_slope(values, points)
                loss_p = loss_p + 0.5 * weight * penalty
                potential_logs = {**potential_logs, key: penalty}
        for key, log, negatives in (
            ("neg_color", "neg_gap", lambda: color_mixed(y)),  # drawn only when on (global RNG)
            ("neg_source", "neg_source_gap", lambda: x),
        ):
            weight = getattr(self.config, key)
            if weight > 0:
                shortfall, gap = self.negatives_shortfall(pot_tx, pot_y, negatives())
                loss_p = loss_p + weight * shortfall
                potential_logs = {**potential_logs, log: gap}
        opt = self.optimizers[self.potential_key]
        opt.zero_grad(set_to_none=True)
        loss_p.backward()
        opt.step()
        logs = {"loss_t": loss_t, f"loss_{self.potential_key}": loss_p}
        logs.update(map_logs)
        logs.update(potential_logs)
        values = torch.stack([v.detach().float().to(loss_p.device) for v in logs.values()])
        return dict(zip(logs, values.tolist(), strict=True))  # one host sync per outer step

    def negatives_shortfall(
        self, pot_tx: Tensor, pot_y: Tensor, negatives: Tensor
    ) -> tuple[Tensor, Tensor]:
        """How far `negatives` (two-colored copies of the real targets, or real sources) fall
        short of being ranked below the real targets by as much as the map's outputs are on
        average (a hinge, zero once each one is), and their mean gap. The margin follows the
        map: a linear term instead (measured with two-colored copies) let the gap grow without
        bound, 6.6 at step 350 against ~0.1 between real and mapped, and the map stopped moving
        (target accuracy 0.01). `pot_tx` and `pot_y` are the step's values of the potential at
        the map's outputs and the real targets: the margin takes them detached, the gap keeps
        pot_y's gradient."""
        s = self.real_sign
        margin = (s * (pot_y - pot_tx)).detach().mean().clamp(min=0)
        gap = s * (pot_y - self.potential(negatives)).flatten()
        return (margin - gap).clamp(min=0).mean(), gap.mean()

    def transport(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        return self.T_eval(x)
