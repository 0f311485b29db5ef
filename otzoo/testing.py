"""Conformance checks any solver must pass; otzoo's own contract tests and third parties use them.

`check_solver(cls)` trains the solver's tiny preset for a few steps, through the same loop as
`otzoo train` (otzoo.loop.run_steps), on a tiny synthetic problem of each data kind it
supports, and checks what the trainer and harness rely on.
"""

from __future__ import annotations

import torch

from otzoo.batches import from_tensors
from otzoo.config import resolve
from otzoo.loop import run_steps
from otzoo.registry import check_fits, list_solvers
from otzoo.solver import PairInfo, Solver

STEPS = 3
# Pair specs whose tiny preset resolves the config for each data kind (only their presets are
# read: the data themselves are the synthetic ones of `tiny_problem`).
PRESET_PAIRS = {"voxel": "3-5", "vector": "gauss:4"}


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
    list_solvers()  # discovery gives every installed solver its id (its entry point's name)
    assert cls.id, f"{cls.__name__} has no id: declare it as an entry point (otzoo.solvers)"
    assert cls.summary, f"{cls.id}: give the solver a one-line summary"
    kinds = kinds or tuple(k for k in ("voxel", "vector") if k in cls.tags)
    assert kinds, f"{cls.id}: tags name no data kind (voxel or vector)"
    for kind in kinds:
        torch.manual_seed(0)
        info, x, y = tiny_problem(kind)
        check_fits(cls, info)
        run = resolve(cls, PRESET_PAIRS[kind], "tiny")
        solver = cls(run.solver_config, info, torch.device("cpu"))
        seen: list[dict[str, float]] = []
        batches = from_tensors(x, y, batch_size, seed=0)
        run_steps(solver, batches, STEPS, on_step=lambda info, seen=seen: seen.append(info.losses))
        assert solver.steps_done == STEPS and len(seen) == STEPS
        for losses in seen:
            assert isinstance(losses, dict) and losses, f"{cls.id}/{kind}: step must return losses"
            for k, v in losses.items():
                assert isinstance(v, float), f"{cls.id}/{kind}: loss {k} is {type(v)}, not float"
        solver.train_mode(False)
        with torch.no_grad():
            z = _fixed_noise(solver, x[:5])
            out = solver.transport(x[:5], z)
        assert out.shape == (5, *info.y_shape), (
            f"{cls.id}/{kind}: transport shape {tuple(out.shape)}"
        )
        assert torch.isfinite(out).all(), f"{cls.id}/{kind}: transport gave non-finite values"

        clone = cls(run.solver_config, info, torch.device("cpu"))
        clone.load_state_dict(solver.state_dict())
        assert clone.steps_done == STEPS, f"{cls.id}/{kind}: steps_done not restored"
        clone.train_mode(False)
        with torch.no_grad():
            again = clone.transport(x[:5], z)
        assert torch.equal(out, again), f"{cls.id}/{kind}: state-dict round trip changed the map"
