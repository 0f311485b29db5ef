"""W2GN: Wasserstein-2 Generative Networks (Korotin et al., ICLR 2021), non-minimax.

Two input-convex potentials: D (forward map grad D) and D_conj (inverse map grad D_conj, an
approximate conjugate). With Y_inv = grad D_conj(y) detached, one loss trains both (docs/design.md):

    L = mean D(x) - mean D(Y_inv)
        + lam * (mean ||grad D(grad D_conj(y)) - y||^2 + mean ||grad D_conj(grad D(x)) - x||^2)

D_conj learns only through the cycle terms. Both potentials are pre-trained to the identity
map (grad D(x) ~ x on source samples, grad D_conj(y) ~ y on target samples) inside the first
step (the loop's first, `steps_done == 0`; not in a warm-started run, whose potentials come
trained), and re-projected onto their convex set after every optimizer step.

On voxels both are DenseICNNs on the flattened grid (`voxel_net=dense`, 2026-12-05): with the
3D-convolutional ICNN (`voxel_net=conv`, weights shared across the grid) W2GN mapped 1% of test
threes to fives; with the dense one 0.95-0.96 in 10 minutes (docs/results.md, "`w2gn`").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from otzoo.conjugate import fit_identity, sq_dist
from otzoo.data.pairs import DataConfig
from otzoo.data.spec import PairSpec
from otzoo.data.vectors import vector_dim
from otzoo.errors import ConfigError, check_value
from otzoo.nets.common import VOXEL_NETS
from otzoo.nets.icnn import ConvICNN3D, DenseICNN, potential_gradient
from otzoo.solver import Batches, PairInfo, Solver, SolverConfig


@dataclass(frozen=True)
class W2GNConfig(SolverConfig):
    lr: float = 3e-4  # Adam, both potentials (reference 3e-4)
    cycle_lambda: float | None = None  # lam; None: min(dim, 50), the reference's choice
    pretrain_steps: int = 300  # identity pre-training steps per potential, in the first step
    pretrain_lr: float = 1e-3  # Adam lr of the identity pre-training
    rank: int = 1  # rank of the input-quadratic layers
    activation: str = "celu"  # convex, non-decreasing: celu | softplus
    strong_convexity: float = 1e-2  # the 0.5*s*||x||^2 term of both potentials
    hidden: tuple[int, ...] = ()  # DenseICNN widths; (): vectors 2d/2d/d, voxels 128/128/64
    voxel_net: str = "dense"  # dense (DenseICNN, the flat grid) | conv (ConvICNN3D)
    init_std: float | None = None  # DenseICNN weight scale; None: 0.1 (vectors), 1/sqrt(D) (voxels)
    icnn_base: int = 16  # ConvICNN3D width (voxel_net=conv)
    icnn_levels: int = 2  # ConvICNN3D levels (each halves the grid)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cycle_lambda is not None and not self.cycle_lambda >= 0:
            raise ConfigError(f"cycle_lambda={self.cycle_lambda}: use a number >= 0 (or none)")
        if self.pretrain_steps < 0:
            raise ConfigError(f"pretrain_steps={self.pretrain_steps}: use an integer >= 0")
        check_value("voxel_net", self.voxel_net, lambda v: v in VOXEL_NETS, " | ".join(VOXEL_NETS))
        if self.init_std is not None and not self.init_std > 0:
            raise ConfigError(f"init_std={self.init_std}: use a number > 0 (or none)")


def build_icnn(c: W2GNConfig, info: PairInfo) -> nn.Module:
    """A DenseICNN (vectors; voxels by default, on the flattened grid) or a ConvICNN3D (voxels,
    `voxel_net=conv`); f = O(||x||^2) in all three."""
    if info.kind == "voxel" and c.voxel_net == "conv":
        return ConvICNN3D(
            info.x_shape[0],
            base=c.icnn_base,
            levels=c.icnn_levels,
            strong_convexity=c.strong_convexity,
            activation=c.activation,
        )
    shape = {"rank": c.rank, "activation": c.activation, "strong_convexity": c.strong_convexity}
    if info.kind == "voxel":
        return DenseICNN.on_grid(info.x_dim, c.hidden, c.init_std, **shape)
    return DenseICNN(info.x_dim, hidden=c.hidden or None, init_std=c.init_std or 0.1, **shape)


class W2GN(Solver):
    summary = "W2GN (Korotin et al. 2021): two ICNN potentials, cycle-regularised, non-minimax"
    tags = frozenset({"voxel", "vector", "neural"})
    Config = W2GNConfig
    amp_safe = False  # gradients of potentials (and their conjugates) need fp32
    former_defaults = {"voxel_net": "conv"}  # voxel runs before 2026-12-05 had ConvICNN3Ds
    presets = {
        "tiny": {"pretrain_steps": 3, "hidden": (16, 16), "icnn_base": 4, "icnn_levels": 1},
        "quick": {"pretrain_steps": 20, "icnn_base": 8},
        "full": {"pretrain_steps": 500, "lr": 3e-4, "icnn_base": 32, "icnn_levels": 3},
    }

    @classmethod
    def pair_presets(cls, spec: PairSpec, preset: str, data: DataConfig) -> dict[str, Any]:
        """Vector settings from the W2 benchmark tuning (benchmarks/w2_bench.md): lr 1e-3
        (3e-4 learned 4x slower per CPU minute at dim 2), batch 256, constant lr (a cosine
        decay over the run did not help: 1.13 vs 1.10 at dim 2, 4.16 vs 3.27 at dim 4).
        Digit pairs, quick: the dense voxel potential pre-trained to the identity for 300 steps
        and lr 1e-3 (3-5, seed 0, one thread, 2026-12-05, 5 min: 0.95 target accuracy at 4.0
        min, purity 0.979; lr 3e-4 0.94 at 5; 20 pre-training steps leave a map that gives
        every three one five of one color, 0.83 target accuracy with color 0.17; the conv
        potential: 0.01)."""
        if spec.kind == "digits" and preset == "quick":
            return {"pretrain_steps": 300, "lr": 1e-3}
        if vector_dim(spec) is None or preset == "tiny":
            return {}
        return {"batch_size": 256, "steps": 12000, "lr": 1e-3}

    def __init__(self, config: W2GNConfig, info: PairInfo, device: torch.device) -> None:
        super().__init__(config, info, device)
        self.D = build_icnn(config, info).to(device)
        self.D_conj = build_icnn(config, info).to(device)
        self.modules = {"D": self.D, "D_conj": self.D_conj}
        self.optimizers = {
            "D": torch.optim.Adam(self.D.parameters(), lr=config.lr),
            "D_conj": torch.optim.Adam(self.D_conj.parameters(), lr=config.lr),
        }
        lam = config.cycle_lambda
        self.lam = float(min(info.x_dim, 50) if lam is None else lam)

    def pretrain(self, batches: Batches) -> dict[str, float]:
        """Fit grad D(x) ~ x on source batches and grad D_conj(y) ~ y on target batches."""
        c = self.config
        return {
            "pretrain_D": fit_identity(self.D, batches.x, c.pretrain_steps, c.pretrain_lr),
            "pretrain_D_conj": fit_identity(
                self.D_conj, batches.y, c.pretrain_steps, c.pretrain_lr
            ),
        }

    def step(self, batches: Batches) -> dict[str, float]:
        first = self.steps_done == 0 and not self.warm_started  # warm: D is trained already
        logs = self.pretrain(batches) if first and self.config.pretrain_steps else {}
        x, y = batches.x(), batches.y()
        y_inv = potential_gradient(self.D_conj, y, create_graph=True)
        x_fwd = potential_gradient(self.D, x, create_graph=True)
        dual = self.D(x).mean() - self.D(y_inv.detach()).mean()
        cycle_y = sq_dist(potential_gradient(self.D, y_inv, create_graph=True), y)
        cycle_x = sq_dist(potential_gradient(self.D_conj, x_fwd, create_graph=True), x)
        loss = dual + self.lam * (cycle_y + cycle_x)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in self.optimizers.values():
            opt.step()
        self.D.clamp_convex()
        self.D_conj.clamp_convex()
        values = {"loss": loss, "dual": dual, "cycle_y": cycle_y, "cycle_x": cycle_x}
        return {**{k: float(v.detach()) for k, v in values.items()}, **logs}

    def transport(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return potential_gradient(self.D, x)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """The learned inverse map grad D_conj(y) (Q -> P)."""
        return potential_gradient(self.D_conj, y)
