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
