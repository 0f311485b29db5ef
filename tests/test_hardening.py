"""Faults a user will meet: damaged or hostile checkpoints, kills, interrupts, bad folders."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from otzoo.runs import list_checkpoints, load_checkpoint
from tests.conftest import TINY, run_cli
from tests.test_cli import assert_one_line_error


def train_args(out, steps=3, *extra):
    return (
        "train",
        "--solver",
        "not",
        "--pair",
        "3-5",
        *TINY,
        "--steps",
        str(steps),
        "--out",
        str(out),
        *extra,
    )


def test_truncated_checkpoint_is_one_line(tmp_path):
    out = tmp_path / "run"
    assert run_cli(*train_args(out)).returncode == 0
    ckpt = list_checkpoints(out)[-1]
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    res = run_cli("train", "--resume", "--steps", "6", "--out", str(out), "--quiet")
    assert_one_line_error(res, "corrupt or truncated", ckpt.name)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker file
        return (open, (self.marker, "w"))


def test_pickle_carrying_code_is_refused_and_never_run(tmp_path):
    out = tmp_path / "run"
    assert run_cli(*train_args(out)).returncode == 0
    marker = tmp_path / "pwned"
    torch.save(
        {"format": "otzoo-checkpoint-1", "evil": _Evil(str(marker))},
        out / "ckpt" / "step_0000009.pt",
    )
    res = run_cli("render", str(out), "--out", str(tmp_path / "r.png"))
    assert_one_line_error(res, "refused to load")
    assert not marker.exists()


def test_checkpoint_of_another_shape_is_one_line(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli(*train_args(a)).returncode == 0
    assert run_cli(*train_args(b, 3, "--set", "t_base=4")).returncode == 0
    shutil.copy(list_checkpoints(a)[-1], b / "ckpt" / "step_0000004.pt")
    res = run_cli("train", "--resume", "--steps", "6", "--out", str(b), "--quiet")
    assert_one_line_error(res, "does not fit this run's networks")


def test_unwritable_output_folder_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = run_cli(*train_args(blocker / "run"))
    assert_one_line_error(res, "not writable", "--out")


def test_second_run_into_a_run_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    assert run_cli(*train_args(out)).returncode == 0
    res = run_cli(*train_args(out))
    assert_one_line_error(res, "already holds a run", "--resume")


def _popen_train(out, steps):
    args = [sys.executable, "-m", "otzoo", *train_args(out, steps, "--set", "ckpt_every=2")]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(out, proc, timeout=120):
    start = time.time()
    while not list_checkpoints(out):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - start < timeout, "no checkpoint appeared"
        time.sleep(0.05)


def _weights(out):
    return load_checkpoint(list_checkpoints(out)[-1])["state"]["modules"]


@pytest.mark.parametrize(
    "sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name
)
def test_signal_then_resume_matches_uninterrupted_run(tmp_path, sig):
    """Stop a long run once its first checkpoint exists, read where the stop landed (the newest
    checkpoint), resume 4 steps past it, and compare with a clean run of that length.
    SIGTERM (what a cluster scheduler sends) and SIGINT write a checkpoint and exit 128 + sig."""
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = _popen_train(killed, 100000)
    _wait_for_checkpoint(killed, proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL  # killed mid-run, not finished
    else:
        assert proc.returncode == 128 + sig, stderr
        assert "Traceback" not in stderr and "checkpoint saved" in stdout
    landed = load_checkpoint(list_checkpoints(killed)[-1])["step"]
    assert 2 <= landed < 100000
    target = landed + 4
    res = run_cli("train", "--resume", "--steps", str(target), "--out", str(killed), "--quiet")
    assert res.returncode == 0, res.stderr
    assert load_checkpoint(list_checkpoints(killed)[-1])["step"] == target
    assert not (killed / ".lock").exists()
    assert run_cli(*train_args(clean, target, "--set", "ckpt_every=2")).returncode == 0
    _assert_same_weights(killed, clean)


def _assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    for net in ("T", "f"):
        assert all(torch.equal(wa[net][k], wb[net][k]) for k in wa[net]), net


def test_corrupt_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    """A truncated newest checkpoint is set aside with a one-line warning; the run resumes from
    the previous one and ends bit-identical to an uninterrupted run."""
    run, clean = tmp_path / "run", tmp_path / "clean"
    assert run_cli(*train_args(run, 6, "--set", "ckpt_every=2")).returncode == 0
    newest = list_checkpoints(run)[-1]
    assert newest.name == "step_0000006.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    res = run_cli("train", "--resume", "--steps", "8", "--out", str(run), "--quiet")
    assert res.returncode == 0, res.stderr
    warning = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(warning) == 1 and "step_0000006.pt" in warning[0] and "set aside" in warning[0]
    assert (run / "ckpt" / "step_0000006.pt.corrupt").is_file()
    assert run_cli(*train_args(clean, 8, "--set", "ckpt_every=2")).returncode == 0
    _assert_same_weights(run, clean)


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(tmp_path):
    import os

    out = tmp_path / "run"
    assert run_cli(*train_args(out)).returncode == 0
    (out / ".lock").write_text(str(os.getpid()))  # a live process holds the run
    res = run_cli("train", "--resume", "--steps", "4", "--out", str(out), "--quiet")
    assert_one_line_error(res, "another otzoo process", str(os.getpid()))
    assert load_checkpoint(list_checkpoints(out)[-1])["step"] == 3
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (out / ".lock").write_text(str(gone.pid))  # its writer died without cleaning up
    res = run_cli("train", "--resume", "--steps", "4", "--out", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    assert load_checkpoint(list_checkpoints(out)[-1])["step"] == 4 and not (out / ".lock").exists()


def test_the_machine_line_names_the_widest_vector_unit(monkeypatch):
    """CPUs of one model name differ in their vector units (and so in speed and rounding):
    the line every benchmark prints names the widest one /proc/cpuinfo lists."""
    from pathlib import Path

    from otzoo.runtime import machine_summary

    for flags, unit in [("fpu avx2 avx512f", "avx512f"), ("fpu avx2 amx_tile", "amx_tile")]:
        text = f"model name\t: Some EPYC\nflags\t\t: {flags}\n"
        monkeypatch.setattr(Path, "read_text", lambda self, *a, text=text, **k: text)
        assert machine_summary().startswith(f"Some EPYC ({unit}), ")
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "model name : Old\nflags : fpu\n")
    assert machine_summary("cuda:0").startswith("Old (no avx2), ")
    assert machine_summary("cuda:0").endswith("device cuda:0")
