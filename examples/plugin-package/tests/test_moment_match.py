"""The example plugin passes otzoo's conformance checks and learns a diagonal Gaussian map."""

from __future__ import annotations

import torch

from otzoo.batches import from_draws
from otzoo.loop import run_steps
from otzoo.registry import get_solver
from otzoo.solver import PairInfo
from otzoo.testing import check_solver


def test_registered_through_its_entry_point_and_conformant():
    cls = get_solver("moment-match")
    assert cls.id == "moment-match"
    check_solver(cls)


def test_learns_a_scale_and_shift():
    cls = get_solver("moment-match")
    torch.manual_seed(0)
    solver = cls(cls.Config(lr=0.05), PairInfo("vector", (3,), (3,)), torch.device("cpu"))
    scale, shift = torch.tensor([0.5, 2.0, 1.0]), torch.tensor([1.0, -1.0, 3.0])

    def source(n, g):
        return torch.randn(n, 3, generator=g)

    def target(n, g):
        return torch.randn(n, 3, generator=g) * scale + shift

    run_steps(solver, from_draws(source, target, 256, seed=0), 400)
    x = torch.randn(4096, 3)
    with torch.no_grad():
        err = (solver.transport(x) - (x * scale + shift)).pow(2).mean()
    assert float(err) < 0.01
