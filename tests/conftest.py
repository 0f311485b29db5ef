"""Shared fixtures: tiny run settings and a helper to run the CLI in-process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
