"""Shared fixtures: tiny run settings and a helper to run the CLI as a user would.

Tests run one torch thread per process (and pytest-xdist runs one process per core): the
networks here are tiny, and two threads per process on a 2-core machine fight each other
(measured up to ~40x slower under load). Subprocesses inherit OMP_NUM_THREADS.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

TINY = ["--preset", "tiny", "--quiet"]


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python -m otzoo ARGS` as a user would (separate process, real exit code)."""
    return subprocess.run(
        [sys.executable, "-m", "otzoo", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli


class Batches:
    """Fresh samples on every call (the trainer's Batches, minimal): sample(n, generator)."""

    def __init__(self, sample_x, sample_y, batch_size: int, seed: int = 1):
        self.sample_x, self.sample_y, self.batch_size = sample_x, sample_y, batch_size
        self.gen = torch.Generator().manual_seed(seed)

    def x(self, n: int | None = None) -> torch.Tensor:
        return self.sample_x(n or self.batch_size, self.gen)

    def y(self, n: int | None = None) -> torch.Tensor:
        return self.sample_y(n or self.batch_size, self.gen)


def pair_batches(pair, batch_size: int) -> Batches:
    """Batches drawing fresh samples of a KnownMapPair's P and Q."""
    return Batches(pair.sample_x, pair.sample_y, batch_size)


def tensor_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Batches:
    """Batches drawing random rows of fixed tensors."""

    def pick(data: torch.Tensor):
        return lambda n, gen: data[torch.randint(len(data), (n,), generator=gen)]

    return Batches(pick(x), pick(y), batch_size)


def w2_dir() -> Path:
    """Where the W2 benchmark files are for tests: $OTZOO_W2BENCH_DIR, else the shared folder,
    else <repo>/../shared/... (the CI layout)."""
    from otzoo.data.vectors import W2_ENV

    repo = Path(__file__).resolve().parents[1]
    candidates = [Path("/work/shared/data/w2bench-mix3tomix10")]
    candidates.append(repo.parent / "shared" / "data" / "w2bench-mix3tomix10")
    if os.environ.get(W2_ENV):
        candidates.insert(0, Path(os.environ[W2_ENV]))
    return next((c for c in candidates if (c / "2_v1.pt").is_file()), candidates[0])
