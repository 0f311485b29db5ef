"""Property: whatever a user types to `train` or `compare`, otzoo exits 0 with a result or 2
with one line, never a traceback, and after a refusal nothing new is on disk (hypothesis
drives the CLI in-process with generated argument lists: valid and invalid pairs, values,
solvers, devices and output paths)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import files_under, run_main

# Valid values repeat, so that about a third of the generated lines run to the end.
PAIRS = ["3-5"] * 3 + [" 3-5", "gauss:2", "gauss:2", "3-3", "3-x", "12-5", "", "noise-5", "w2:3"]
SOLVERS = ["not", "pot-linear", "pot-linear", "nott", "otm"]
SETS = ["max_per_digit=10"] * 4 + ["lr_schedule=cosine"] * 2 + ["grid=9", "lr_t=-1", "lr_t=nan"]
SETS += ["ema=2", "batch_size=0", "bogus=1", "t_iters=two", "amp=fp8", "=3"]
STEPS = [None, "1", "1", "2", "0", "-3", "abc"]
GRIDS = [None, None, None, "8", "1000", "-1", "x"]
DEVICES = [None, None, None, "cpu", "tpu", "cuda:7"]
OUTS = ["new", "nested/new", "existing-file", "under-a-file"]


@st.composite
def command_lines(draw) -> tuple[list[str], str]:
    compare = draw(st.booleans())
    args = ["compare" if compare else "train", "--preset", "tiny", "--quiet"]
    if compare:
        ids = draw(st.lists(st.sampled_from(SOLVERS), min_size=1, max_size=2, unique=True))
        args += ["--solvers", ",".join(ids)]
    else:
        args += ["--solver", draw(st.sampled_from(SOLVERS))]
    args += ["--pair", draw(st.sampled_from(PAIRS))]
    for option, pool in (("--steps", STEPS), ("--grid", GRIDS), ("--device", DEVICES)):
        value = draw(st.sampled_from(pool))
        if value is not None:
            args += [option, value]
    for item in draw(st.lists(st.sampled_from(SETS), max_size=1)):
        args += ["--set", item]
    return args, draw(st.sampled_from(OUTS))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(command_lines())
def test_any_command_line_exits_0_or_2_and_a_refusal_writes_nothing(line):
    args, where = line
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "existing-file").write_text("not a folder")
        out = {
            "new": root / "run",
            "nested/new": root / "a" / "b" / "run",
            "existing-file": root / "existing-file",
            "under-a-file": root / "existing-file" / "run",
        }[where]
        before = files_under(root)
        code, _, err = run_main(*args, "--out", str(out))
        event(f"exit {code}")
        assert "Traceback" not in err, err
        assert code in (0, 2), (code, err)
        if code == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("otzoo: error: "), err
            assert files_under(root) == before, (args, where)
            assert sorted(p.name for p in root.iterdir()) == ["existing-file"]
