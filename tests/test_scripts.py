"""Every script under benchmarks/ imports and answers --help (their real runs take minutes to
hours); the time-to-quality benchmark also runs once on the tiny preset, where it must end on
compare's row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

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


@pytest.mark.parametrize("select", ["0", "6"])
def test_time_to_quality_at_the_presets_steps_ends_on_compares_row(tmp_path, select):
    """The benchmark builds a solver as train() does, so with --steps-cap its last row is the
    row `otzoo compare` gives for the same solver, preset and seed. Compare runs first, so the
    benchmark finds the judge cached: loading it builds a network, whose init draws from torch's
    RNG, and a benchmark that did that between seeding and building the solver started
    elsewhere (it did until 2026-12-03). With map selection both end on the chosen map."""
    out = tmp_path / "cmp"
    res = run_cli("compare", "--solvers", "not", "--pair", "3-5", "--preset", "tiny",
                  "--set", f"select_every={select}", "--out", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    want = json.loads((out / "metrics.json").read_text())["not"]
    ttq = subprocess.run(
        [sys.executable, str(BENCHMARKS / "time_to_quality.py"), "--solvers", "not", "--seeds",
         "0", "--pair", "3-5", "--preset", "tiny", "--steps-cap", "--keep-going",
         "--eval-every-s", "1000", "--budget-min", "10", "--set", f"select_every={select}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ttq.returncode == 0, ttq.stderr[-2000:]
    assert "training the judge" not in ttq.stdout  # it loaded compare's
    header, row = [ln for ln in ttq.stdout.splitlines() if ln.startswith("| ")][-2:]
    got = dict(zip(header.strip("| ").split(" | "), row.strip("| ").split(" | "), strict=True))
    assert float(got["steps"]) == 20  # the tiny preset's steps
    if select != "0":
        assert float(got["selected_step"]) == want["selected_step"]
    for key in ("transport_cost", "lit_share", "color_purity", "target_accuracy"):
        assert float(got[key]) == pytest.approx(want[key], rel=1e-3), key


def test_haze_split_reads_a_voxel_run_and_refuses_a_folder_that_is_none(tmp_path):
    """The identity row first (it keeps every source stroke lit, draws none), then the run's."""
    out = tmp_path / "run"
    res = run_cli("train", "--solver", "pot-sinkhorn", "--pair", "3-5", "--preset", "tiny",
                  "--quiet", "--out", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    script = str(BENCHMARKS / "haze_split.py")
    res = subprocess.run([sys.executable, script, str(out), "--samples", "8", "--by-frequency"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    split, ghost = res.stdout.strip().split("\n\n")
    header, _, identity, row = split.splitlines()
    cols = header.strip("| ").split(" | ")
    ident = dict(zip(cols, identity.strip("| ").split(" | "), strict=True))
    got = dict(zip(cols, row.strip("| ").split(" | "), strict=True))
    assert ident["source_only lit"] == "1.000" and ident["target_only lit"] == "0.000"
    assert got["map"] == "pot-sinkhorn (run)"
    assert float(got["target_only brightness"]) > 0.0  # the map draws some of the target
    ghost_rows = [line.strip("| ").split(" | ") for line in ghost.splitlines()[3:]]
    assert [r[:2] for r in ghost_rows] == [  # four groups a map, three frequency bins each
        [m, g] for m in ("identity (3-5, seed 0)", "pot-sinkhorn (run)")
        for g in ("kept", "source_only", "target_only", "background")
    ]  # fmt: skip
    assert ghost_rows[1][4].startswith("0.00 / 1.00")  # the identity: source strokes at full
    assert ghost_rows[3][4].startswith("0.00 / 0.00")  # and a dark background
    bad = subprocess.run([sys.executable, script, str(out), str(tmp_path / "nothing")],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode == 2 and bad.stdout == ""
    assert "not a run folder" in bad.stderr and "Traceback" not in bad.stderr


def test_throughput_times_a_solver_that_draws_once_for_many_steps():
    """`otcfm` draws a plan's samples once every `ot_batch // batch` steps, so a short window
    draws none: its cell gives seconds per step (the script divided by zero until 2026-12-07)."""
    res = subprocess.run(
        [sys.executable, str(BENCHMARKS / "throughput.py"), "--solvers", "otcfm", "--preset",
         "quick", "--batch", "4", "--steps", "1", "--modes", "fp32 eager", "--threads", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    row = [ln for ln in res.stdout.splitlines() if ln.startswith("| otcfm |")]
    assert len(row) == 1 and "s/step (1.00x)" in row[0], res.stdout


@pytest.mark.parametrize(
    ("script", "args", "says"),
    [
        ("time_to_quality.py", ["--threads", "-1"], "--threads -1"),
        ("time_to_quality.py", ["--set", "bogus=1"], "--set bogus: unknown key"),
        ("haze_split.py", ["--threads", "-1"], "--threads -1"),
        ("throughput.py", ["--device", "gpu"], "--device gpu: unknown device"),
    ],
)
def test_scripts_refuse_bad_input_in_one_line(tmp_path, script, args, says):
    """A bad --threads, --set or --device is a usage error (exit 2, nothing printed), as in the
    CLI; each raised a traceback until 2026-12-07 (and --threads 0 meant a crash, not one per
    core)."""
    base = {
        "time_to_quality.py": ["--solvers", "not", "--preset", "tiny", "--budget-min", "0.1"],
        "haze_split.py": [str(tmp_path)],
        "throughput.py": ["--solvers", "not", "--steps", "1", "--threads", "1"],
    }[script]
    res = subprocess.run([sys.executable, str(BENCHMARKS / script), *base, *args],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 2 and res.stdout == "", res.stderr[-2000:]
    assert says in res.stderr and "Traceback" not in res.stderr
