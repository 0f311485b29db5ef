"""Launched by tests/test_distributed.py under torchrun: trains a tiny `not` run data-parallel
and saves each rank's final weights so the test can compare them."""

import sys
from pathlib import Path

import torch

from otzoo import distributed
from otzoo.config import parse_overrides, resolve
from otzoo.registry import get_solver
from otzoo.train import train

if __name__ == "__main__":
    out = Path(sys.argv[1])
    cls = get_solver("not")
    run = resolve(cls, "3-5", "tiny", parse_overrides(["steps=3", "device=cpu"], cls))
    result = train(run, out / "run", show_progress=False)
    rank, _ = distributed.world()
    torch.save(result.solver.state_dict()["modules"], out / f"rank{rank}.pt")
    distributed.shutdown()
