"""Every class of refusal: exit status 2, one line on stderr naming the problem and the fix, and
nothing written, so the same command with the mistake fixed just works (in-process runs)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TINY, files_under, run_main

TRAIN = ("train", "--solver", "not", "--pair", "3-5", *TINY, "--steps", "2")


def assert_refused(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("otzoo: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


CASES = {
    "bad data file": (["--data", "kaggle:/nonexistent/full.h5"], "file not found"),
    "bad pair": (["--pair", "3-3"], "same digit"),
    "bad --set key": (["--set", "bogus=1"], "unknown key"),
    "bad --set type": (["--set", "t_iters=two"], "type int"),
    "bad --set value": (["--set", "lr_t=-1"], "lr_t=-1.0 is out of range"),
    "nan learning rate": (["--set", "lr_t=nan"], "finite"),
    "ema of 2": (["--set", "ema=2"], "[0, 1)"),
    "negative penalty": (["--set", "r2=-1"], "r2=-1.0 is out of range"),
    "zero batch": (["--set", "batch_size=0"], "batch_size=0"),
    "zero steps": (["--steps", "0"], "steps=0"),
    "negative steps": (["--steps", "-5"], "steps=-5"),
    "grid too big": (["--grid", "1000"], "GiB"),
    "unknown solver": (["--solver", "nott"], "unknown solver"),
    "unknown preset": (["--preset", "huge"], "unknown preset"),
    "unknown device": (["--device", "tpu"], "unknown device"),
    "bad seed": (["--seed", "-1"], "seed=-1"),
}
if not torch.cuda.is_available():
    CASES["missing CUDA"] = (["--device", "cuda"], "CUDA is not available")


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_train_writes_nothing_then_the_fixed_command_works(case, tmp_path):
    extra, needle = CASES[case]
    out = tmp_path / "run"
    code, _, err = run_main(*TRAIN, *extra, "--out", str(out))
    assert_refused(code, err, needle)
    assert not out.exists(), sorted(files_under(out))


def test_the_same_command_fixed_just_works_after_a_refusal(tmp_path):
    out = tmp_path / "run"
    assert run_main(*TRAIN, "--set", "lr_t=-1", "--out", str(out))[0] == 2
    code, _, err = run_main(*TRAIN, "--out", str(out))
    assert code == 0, err
    assert (out / "ckpt" / "step_0000002.pt").is_file()


def test_incompatible_resume_changes_nothing(tmp_path):
    out = tmp_path / "run"
    assert run_main(*TRAIN, "--out", str(out))[0] == 0
    before = files_under(out)
    for args, needle in (
        (["--pair", "3-6"], "--pair 3-6 differs"),
        (["--solver", "otm"], "--solver otm differs"),
        (["--set", "lr_t=1e-3"], "drop --set"),
        (["--steps", "0"], "steps=0"),
    ):
        code, _, err = run_main("train", "--resume", "--out", str(out), "--quiet", *args)
        assert_refused(code, err, needle)
        assert files_under(out) == before
    code, _, err = run_main("train", "--resume", "--out", str(tmp_path / "none"), "--quiet")
    assert_refused(code, err, "no run to resume")
    assert not (tmp_path / "none").exists()


def test_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path):
    """A folder with config.json but no checkpoint (a run that died early) is no trap: the same
    command starts it again, and --resume starts it from step 0."""
    out = tmp_path / "run"
    assert run_main(*TRAIN, "--out", str(out))[0] == 0
    for ckpt in (out / "ckpt").glob("*.pt"):
        ckpt.unlink()
    code, _, err = run_main(*TRAIN, "--out", str(out))
    assert code == 0, err
    for ckpt in (out / "ckpt").glob("*.pt"):
        ckpt.unlink()
    code, _, err = run_main("train", "--resume", "--out", str(out), "--quiet")
    assert code == 0, err
    assert (out / "ckpt" / "step_0000002.pt").is_file()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--solvers", "not,nott"], "unknown solver"),
        (["--solvers", "not", "--pair", "3-x"], "invalid pair"),
        (["--solvers", "not", "--set", "bogus=1"], "no listed solver"),
        (["--solvers", "not", "--set", "lr_t=0"], "lr_t=0.0"),
        (["--solvers", "not", "--steps", "0"], "steps=0"),
        (["--solvers", "not", "--threads", "-1"], "--threads -1"),
        (["--solvers", ","], "--solvers is empty"),
    ],
)
def test_refused_compare_writes_nothing(args, needle, tmp_path):
    out = tmp_path / "cmp"
    code, _, err = run_main("compare", "--pair", "3-5", *TINY, *args, "--out", str(out))
    assert_refused(code, err, needle)
    assert not out.exists()


def test_usage_errors_are_one_line_with_status_2():
    for args, needle in (
        (["train", "--bogus"], "No such option"),
        (["train", "--steps", "abc"], "--steps"),
        (["nonsense"], "No such command"),
    ):
        code, _, err = run_main(*args)
        assert_refused(code, err, needle)
