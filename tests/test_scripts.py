"""Every script under benchmarks/ imports and answers --help (they are not otherwise run by CI:
their numbers take minutes to hours)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("*.py"))


def test_the_scripts_are_found():
    assert {p.name for p in SCRIPTS} >= {"throughput.py", "time_to_quality.py"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_answers_help(script):
    res = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("usage:") and "Traceback" not in res.stderr


def test_shell_scripts_parse():
    for script in sorted(BENCHMARKS.glob("*.sh")):
        res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert res.returncode == 0, (script.name, res.stderr)
    assert (BENCHMARKS / "gpu_check.sh").is_file()
