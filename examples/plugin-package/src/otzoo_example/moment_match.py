"""`moment-match`: T(x) = a * x + b per element, trained to match the target's per-element mean
and standard deviation (a moment-matching baseline; the OT map between two Gaussians with
diagonal covariances is exactly of this form)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from otzoo.solver import Batches, PairInfo, Solver, SolverConfig


@dataclass(frozen=True)
class MomentMatchConfig(SolverConfig):
    lr: float = 0.05  # Adam lr of the scale and shift


class MomentMatch(Solver):
    summary = "Example plugin: per-element affine map matching target means and stds"
    tags = frozenset({"voxel", "vector", "neural"})
    Config = MomentMatchConfig
    presets = {"tiny": {"lr": 0.1}, "quick": {"steps": 200}, "full": {"steps": 1000}}

    def __init__(self, config: MomentMatchConfig, info: PairInfo, device: torch.device) -> None:
        super().__init__(config, info, device)
        self.map = nn.ParameterDict(
            {
                "log_scale": nn.Parameter(torch.zeros(info.x_shape, device=device)),
                "shift": nn.Parameter(torch.zeros(info.x_shape, device=device)),
            }
        )
        self.modules = {"map": self.map}  # checkpointed for free
        self.optimizers = {"map": torch.optim.Adam(self.map.parameters(), lr=config.lr)}

    def step(self, batches: Batches) -> dict[str, float]:
        x, y = batches.x(), batches.y()
        tx = self.transport(x)
        mean_gap = (tx.mean(0) - y.mean(0)).pow(2).mean()
        std_gap = (tx.std(0) - y.std(0)).pow(2).mean()
        loss = mean_gap + std_gap
        self.optimizers["map"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["map"].step()
        return {"mean_gap": float(mean_gap.detach()), "std_gap": float(std_gap.detach())}

    def transport(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return x * self.map["log_scale"].exp() + self.map["shift"]
