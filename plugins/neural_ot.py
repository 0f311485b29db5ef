"""NOT: Neural Optimal Transport (Korotin, Selikhanovych, Burnaev, ICLR 2023).

Strong quadratic cost (`not`) and gamma-weak quadratic cost (`not-weak`), losses exactly as
DESIGN §2. A map T and a potential f play a saddle game; T takes K_T steps per f step.
(Module name: `not` is a Python keyword.)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from otzoo.data.spec import PairSpec
from otzoo.data.vectors import vector_dim
from otzoo.errors import ConfigError
from otzoo.nets import MLP, ResNet3D, UNet3D
from otzoo.registry import register_solver
from otzoo.solver import Batches, PairInfo, Solver, SolverConfig


@dataclass(frozen=True)
class NOTConfig(SolverConfig):
    t_iters: int = 10  # K_T: map steps per potential step (reference: 10)
    lr_t: float = 1e-4
    lr_f: float = 1e-4
    weight_decay: float = 1e-10
    t_base: int = 16  # UNet3D width
    t_depth: int = 2
    t_residual: bool = True  # identity-initialised map: x + head(x), head starts at zero
    f_base: int = 16  # ResNet3D potential width
    f_levels: int = 2
    f_norm: str = "group"  # potential's normalisation: group | none (none sees faint haze)
    hidden: tuple[int, ...] = (128, 128)  # MLP widths for vector data
    ema: float = 0.0  # >0: transport with an exponential moving average of T (damps saddle swings)
    t_clamp: bool = False  # voxels: clip T's output to the data range [-1, 1]
    lr_decay_steps: int = 0  # cosine decay of both lrs to 1e-4 x over this many steps; 0: constant


@dataclass(frozen=True)
class NOTWeakConfig(NOTConfig):
    gamma: float = 0.66  # final weak-cost gamma (reference 0.66)
    gamma_ramp_steps: int = 1000  # gamma grows linearly from 0 over these outer steps
    z_size: int = 8  # noise draws per x in a T step
    z_std: float = 0.1
    noise_channels: int = 1


_PRESETS = {
    "tiny": {
        "t_iters": 2,
        "t_base": 8,
        "t_depth": 1,
        "f_base": 8,
        "f_levels": 1,
        "hidden": (32, 32),
    },
    # quick: measured on a 2-core CPU (benchmarks/time_to_quality.py; README): small nets,
    # K_T = 2 and an EMA map reach ~0.9 target accuracy on 3-5 in ~6 minutes.
    "quick": {"t_iters": 2, "t_base": 8, "f_base": 8, "ema": 0.98, "lr_t": 3e-4, "lr_f": 3e-4},
    "full": {"t_iters": 10, "lr_t": 1e-4, "lr_f": 1e-4, "t_base": 48, "t_depth": 3, "f_base": 48},
}


def saddle_vector_presets(spec: PairSpec, preset: str, lr_keys: tuple[str, ...]) -> dict[str, Any]:
    """Vector settings of the NOT/OTM saddle, tuned on the W2 benchmark (benchmarks/w2_bench.md)
    for ~2-3 CPU minutes per dimension: 3-layer MLPs, batch 256. Below dim 16, K_T = 3, lr 1e-3
    with cosine decay over the run (which halved UVP at dims 2-8); from dim 16 on, K_T = 10 at
    a constant lr 3e-4 (K_T = 3, lr 1e-3 ended worse than the identity at dim 32, and the decay
    cost 15-25% there: the run is still far from converged when the lr dies). `tiny` stays
    tiny."""
    dim = vector_dim(spec)
    if dim is None or preset == "tiny":
        return {}
    low = dim < 16
    steps, t_iters, lr = (12000, 3, 1e-3) if low else (4800, 10, 3e-4)
    return {
        "batch_size": 256,
        "hidden": (128, 128, 128),
        "steps": steps,
        "lr_decay_steps": steps if low else 0,
        "t_iters": t_iters,
        **dict.fromkeys(lr_keys, lr),
    }


def _adam(module: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)


@register_solver("not")
class NeuralOT(Solver):
    summary = "Neural OT, strong quadratic cost (Korotin et al. 2023): UNet map vs ResNet potential"
    tags = frozenset({"voxel", "vector", "neural"})
    Config = NOTConfig
    presets = _PRESETS
    noise_channels = 0

    def __init__(self, config: NOTConfig, info: PairInfo, device: torch.device) -> None:
        super().__init__(config, info, device)
        if info.x_shape != info.y_shape:
            raise ConfigError(
                f"solver {self.id!r} uses the quadratic cost ||x - T(x)||^2, which needs source and "
                f"target of one shape (got {info.x_shape} and {info.y_shape}); use otm for such pairs"
            )
        self.T, self.f = self._build_nets(config, info)
        self.modules = {"T": self.T.to(device), "f": self.f.to(device)}
        self.T_eval = self.T
        if config.ema > 0:
            self.T_eval = copy.deepcopy(self.T).requires_grad_(False)
            self.modules["T_ema"] = self.T_eval
        self.optimizers = {
            "T": _adam(self.T, config.lr_t, config.weight_decay),
            "f": _adam(self.f, config.lr_f, config.weight_decay),
        }

    @classmethod
    def pair_presets(cls, spec: PairSpec, preset: str) -> dict[str, Any]:
        return saddle_vector_presets(spec, preset, ("lr_t", "lr_f"))

    def _build_nets(self, c: NOTConfig, info: PairInfo) -> tuple[nn.Module, nn.Module]:
        k = self.noise_channels
        if info.kind == "voxel":
            channels = info.x_shape[0]
            T = UNet3D(
                channels,
                info.y_shape[0],
                base=c.t_base,
                depth=c.t_depth,
                noise_channels=k,
                residual=c.t_residual,
                clamp=(-1.0, 1.0) if c.t_clamp else None,
            )
            f = ResNet3D(info.y_shape[0], base=c.f_base, levels=c.f_levels, norm=c.f_norm)
            return T, f
        T = _VectorMap(info.x_dim, info.y_dim, c.hidden, k, c.t_residual)
        return T, MLP(info.y_dim, 1, hidden=c.hidden)

    # The T loss differs between strong and weak; the f step is shared.
    # Logs stay tensors until the end of `step`: one host sync per outer step, not per T step.
    def _t_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        tx = self.T(x)
        cost = F.mse_loss(tx, x)  # ||x - T(x)||^2 / D, averaged over the batch
        loss = cost - self.f(tx).mean()
        return loss, {"cost": cost.detach()}

    def _map_for_f(self, x: torch.Tensor) -> torch.Tensor:
        return self.T(x)

    def step(self, batches: Batches) -> dict[str, float]:
        self.schedule_lr(self.config.lr_decay_steps)
        self.f.requires_grad_(False)
        for _ in range(self.config.t_iters):
            loss_t, logs = self._t_loss(batches.x())
            self.optimizers["T"].zero_grad(set_to_none=True)
            loss_t.backward()
            self.optimizers["T"].step()
            if self.T_eval is not self.T:
                ema_update(self.T_eval, self.T, self.config.ema)
        self.f.requires_grad_(True)

        x, y = batches.x(), batches.y()
        with torch.no_grad():
            tx = self._map_for_f(x)
        loss_f = self.f(tx).mean() - self.f(y).mean()
        self.optimizers["f"].zero_grad(set_to_none=True)
        loss_f.backward()
        self.optimizers["f"].step()
        logs = {"loss_t": loss_t.detach(), "loss_f": loss_f.detach(), **logs}
        return {k: float(v) for k, v in logs.items()}

    def transport(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return self.T_eval(x)


@register_solver("not-weak")
class NeuralOTWeak(NeuralOT):
    summary = "Neural OT, gamma-weak quadratic cost: stochastic map T(x, z), one-to-many"
    tags = frozenset({"voxel", "vector", "neural", "stochastic"})
    Config = NOTWeakConfig
    presets = {
        "tiny": {**_PRESETS["tiny"], "z_size": 4, "gamma_ramp_steps": 5},
        "quick": {**_PRESETS["quick"], "batch_size": 8, "gamma_ramp_steps": 100},
        "full": {**_PRESETS["full"], "batch_size": 16, "gamma_ramp_steps": 1000},
    }

    def __init__(self, config: NOTWeakConfig, info: PairInfo, device: torch.device) -> None:
        self.noise_channels = config.noise_channels
        super().__init__(config, info, device)

    @property
    def gamma(self) -> float:
        c = self.config
        return c.gamma * min(1.0, self.steps_done / max(c.gamma_ramp_steps, 1))

    def sample_noise(self, x: torch.Tensor) -> torch.Tensor:
        """z ~ N(0, z_std^2): one extra channel (voxels) or extra dims (vectors) per sample."""
        shape = (
            (len(x), self.noise_channels, *x.shape[2:])
            if x.dim() > 2
            else (len(x), self.noise_channels)
        )
        return torch.randn(shape, device=x.device, dtype=x.dtype) * self.config.z_std

    def _t_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        zs = self.config.z_size
        xr = x.repeat_interleave(zs, dim=0)  # [B*Z, ...], Z draws per x
        txz = self.T(xr, self.sample_noise(xr)).view(len(x), zs, *x.shape[1:])
        cost = F.mse_loss(txz.mean(dim=1), x)
        var = txz.var(dim=1).mean()
        # Unbiased estimate of (1/D)[E||x - T||^2 - gamma Var] (DESIGN §2, reference NOT code).
        loss = cost - self.f(txz.flatten(0, 1)).mean() + var * (1 - self.gamma - 1.0 / zs)
        logs = {"cost": cost.detach(), "variance": var.detach(), "gamma": torch.tensor(self.gamma)}
        return loss, logs

    def _map_for_f(self, x: torch.Tensor) -> torch.Tensor:
        return self.T(x, self.sample_noise(x))

    def transport(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return self.T_eval(x, self.sample_noise(x) if z is None else z)


@torch.no_grad()
def ema_update(avg: nn.Module, live: nn.Module, decay: float) -> None:
    """avg <- decay * avg + (1 - decay) * live for parameters; buffers are copied."""
    torch._foreach_lerp_(list(avg.parameters()), list(live.parameters()), 1.0 - decay)
    for a, b in zip(avg.buffers(), live.buffers(), strict=True):
        a.copy_(b)


class _VectorMap(nn.Module):
    """Vector-data map with optional noise inputs, matching UNet3D's (x, z) call."""

    def __init__(self, d_in: int, d_out: int, hidden: tuple[int, ...], noise: int, residual: bool):
        super().__init__()
        self.noise = noise
        self.residual = residual and d_in == d_out
        self.net = MLP(d_in + noise, d_out, hidden=hidden)
        if self.residual:  # identity at init, as for the voxel map
            last = [m for m in self.net.modules() if isinstance(m, nn.Linear)][-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        h = self.net(torch.cat([x, z], dim=1) if self.noise else x)
        return x + h if self.residual else h
