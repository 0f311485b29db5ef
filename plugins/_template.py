"""Template for a new otzoo solver: copy this file into your own package and edit.

This template is complete and trains: it learns the best *translation* map T(x) = x + b by
minimising the same saddle as NOT with a linear potential, which is a useful sanity baseline.
To publish your solver:

1. Copy this module into your package (e.g. `mypkg/my_solver.py`) and rename the class.
2. Declare it in your pyproject.toml, exactly as otzoo's built-ins do; the entry point's name
   is the solver's id (written nowhere else):

       [project.entry-points."otzoo.solvers"]
       my-id = "mypkg.my_solver:MySolver"

3. `pip install -e .`, then `otzoo solvers` lists it and `otzoo compare --solvers my-id,not`
   judges it beside the others. Run the conformance checks in your own tests:

       from otzoo.registry import get_solver
       from otzoo.testing import check_solver
       def test_my_solver(): check_solver(get_solver("my-id"))

examples/plugin-package/ is such a package, ready to copy.

Networks: take them from `otzoo.nets` (UNet3D, ResNet3D, MLP, ICNNs) instead of defining copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from otzoo.solver import Batches, PairInfo, Solver, SolverConfig


@dataclass(frozen=True)
class TranslationConfig(SolverConfig):
    lr: float = 1e-2  # every field needs a default that runs
    f_iters: int = 1


class TranslationSolver(Solver):
    summary = "Template: best translation map x + b (copy plugins/_template.py to start a solver)"
    tags = frozenset({"voxel", "vector", "neural"})  # which data kinds it supports
    Config = TranslationConfig
    presets = {"tiny": {"lr": 5e-2}}  # per-preset overrides ("tiny" must run in seconds)

    def __init__(self, config: TranslationConfig, info: PairInfo, device: torch.device) -> None:
        super().__init__(config, info, device)
        self.shift = nn.Parameter(torch.zeros(info.x_shape, device=device))
        self.holder = nn.ParameterDict({"shift": self.shift})
        # Everything in self.modules / self.optimizers is checkpointed automatically.
        self.modules = {"T": self.holder}
        self.optimizers = {"T": torch.optim.Adam(self.holder.parameters(), lr=config.lr)}

    def step(self, batches: Batches) -> dict[str, float]:
        x, y = batches.x(), batches.y()
        # With a linear potential the quadratic-cost saddle reduces to matching means.
        loss = ((x + self.shift).mean(0) - y.mean(0)).pow(2).mean()
        self.optimizers["T"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["T"].step()
        return {"loss": float(loss.detach())}  # plain floats; the trainer logs and NaN-checks them

    def transport(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.shift
