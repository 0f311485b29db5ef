"""Conformance checks any solver must pass; otzoo's own contract tests and third parties use them.

`check_solver(MySolver)` trains the solver's tiny config for a few steps on a tiny synthetic
problem of each data kind it supports and checks what the trainer and harness rely on.
"""

from __future__ import annotations

import math

import torch

from otzoo.solver import PairInfo, Solver

STEPS = 3


class _Batches:
    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0):
        self.x_all, self.y_all, self.batch_size = x, y, batch_size
        self._g = torch.Generator().manual_seed(seed)

    def x(self, n: int | None = None) -> torch.Tensor:
        return self.x_all[
            torch.randint(len(self.x_all), (n or self.batch_size,), generator=self._g)
        ]

    def y(self, n: int | None = None) -> torch.Tensor:
        return self.y_all[
            torch.randint(len(self.y_all), (n or self.batch_size,), generator=self._g)
        ]


def tiny_problem(
    kind: str, n: int = 24, seed: int = 0
) -> tuple[PairInfo, torch.Tensor, torch.Tensor]:
    """A voxel pair (3x8^3 blobs in [-1, 1]) or a vector pair (shifted Gaussians in R^4)."""
    g = torch.Generator().manual_seed(seed)
    if kind == "voxel":
        shape = (3, 8, 8, 8)
        x = (torch.rand(n, *shape, generator=g) * 0.5 - 1.0).clamp(-1, 1)
        y = (torch.rand(n, *shape, generator=g) * 0.5 - 0.5).clamp(-1, 1)
    else:
        shape = (4,)
        x = torch.randn(n, *shape, generator=g)
        y = torch.randn(n, *shape, generator=g) * 0.5 + 2.0
    return PairInfo(kind=kind, x_shape=shape, y_shape=shape), x, y


def _fixed_noise(solver: Solver, x: torch.Tensor) -> torch.Tensor | None:
    sample = getattr(solver, "sample_noise", None)
    if "stochastic" not in solver.tags or sample is None:
        return None
    torch.manual_seed(123)
    return sample(x)


def check_solver(
    cls: type[Solver], kinds: tuple[str, ...] | None = None, batch_size: int = 8
) -> None:
    """Raise AssertionError when `cls` breaks the protocol on any data kind it declares."""
    assert cls.id, f"{cls.__name__} is not registered (use @register_solver)"
    assert cls.summary, f"{cls.id}: give the solver a one-line summary"
    kinds = kinds or tuple(k for k in ("voxel", "vector") if k in cls.tags)
    assert kinds, f"{cls.id}: tags name no data kind (voxel or vector)"
    for kind in kinds:
        torch.manual_seed(0)
        info, x, y = tiny_problem(kind)
        config = cls.tiny_config()
        solver = cls(config, info, torch.device("cpu"))
        batches = _Batches(x, y, batch_size)
        for i in range(STEPS):
            losses = solver.step(batches)
            solver.steps_done = i + 1  # as the trainer does: step-driven schedules see it
            assert isinstance(losses, dict) and losses, f"{cls.id}/{kind}: step must return losses"
            for k, v in losses.items():
                assert isinstance(v, float), f"{cls.id}/{kind}: loss {k} is {type(v)}, not float"
                assert math.isfinite(v), f"{cls.id}/{kind}: loss {k}={v} at step {i}"
        solver.train_mode(False)
        with torch.no_grad():
            z = _fixed_noise(solver, x[:5])
            out = solver.transport(x[:5], z)
        assert out.shape == (5, *info.y_shape), (
            f"{cls.id}/{kind}: transport shape {tuple(out.shape)}"
        )
        assert torch.isfinite(out).all(), f"{cls.id}/{kind}: transport gave non-finite values"

        clone = cls(config, info, torch.device("cpu"))
        clone.load_state_dict(solver.state_dict())
        clone.train_mode(False)
        with torch.no_grad():
            again = clone.transport(x[:5], z)
        assert torch.equal(out, again), f"{cls.id}/{kind}: state-dict round trip changed the map"
