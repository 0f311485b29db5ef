"""The CLI as a user meets it: real processes, real exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import TINY, run_cli


def assert_one_line_error(res, *needles):
    """A user error: exit status exactly 2, one line on stderr naming the problem, no traceback."""
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    err = res.stderr.strip()
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err


@pytest.mark.parametrize("pair", ["3-3", "3-x", "12-5", ""])
def test_bad_pair_is_one_line(tmp_path, pair):
    res = run_cli("train", "--solver", "not", "--pair", pair, *TINY, "--out", str(tmp_path / "r"))
    assert_one_line_error(res, "pair")
    assert not (tmp_path / "r").exists()


def test_unknown_solver_lists_known(tmp_path):
    res = run_cli("train", "--solver", "nott", "--pair", "3-5", *TINY, "--out", str(tmp_path / "r"))
    assert_one_line_error(res, "unknown solver 'nott'", "not-weak")


@pytest.mark.parametrize("item, needle", [("bogus=1", "unknown key"), ("t_iters=two", "type int")])
def test_bad_set_is_one_line(tmp_path, item, needle):
    res = run_cli(
        "train",
        "--solver",
        "not",
        "--pair",
        "3-5",
        *TINY,
        "--set",
        item,
        "--out",
        str(tmp_path / "r"),
    )
    assert_one_line_error(res, needle)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_absent_is_one_line(tmp_path):
    res = run_cli(
        "train",
        "--solver",
        "not",
        "--pair",
        "3-5",
        *TINY,
        "--device",
        "cuda",
        "--out",
        str(tmp_path / "r"),
    )
    assert_one_line_error(res, "CUDA is not available", "--device cpu")


def test_train_resume_render_round_trip(tmp_path):
    out = tmp_path / "run"
    res = run_cli(
        "train", "--solver", "not", "--pair", "3-5", *TINY, "--steps", "3", "--out", str(out)
    )
    assert res.returncode == 0, res.stderr
    assert (out / "ckpt" / "step_0000003.pt").is_file() and (out / "metrics.json").is_file()
    assert list((out / "tb").glob("events.out.tfevents.*"))
    res = run_cli("train", "--resume", "--steps", "6", "--out", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "metrics.json").read_text())["steps"] == 6
    assert (out / "ckpt" / "step_0000006.pt").is_file()
    res = run_cli("render", str(out), "--n", "5", "--out", str(tmp_path / "r.png"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_solvers_table_and_keys():
    res = run_cli("solvers")
    assert res.returncode == 0 and "not-weak" in res.stdout and "stochastic" in res.stdout


def test_keys_show_the_values_a_run_with_that_preset_uses_and_what_each_means():
    from otzoo.config import config_fields, describe_keys
    from otzoo.registry import get_solver, list_solvers
    from tests.conftest import run_main

    code, out, _ = run_main("solvers", "--keys", "not", "--preset", "quick")
    assert code == 0
    values = {
        line.split("│")[1].strip(): line.split("│")[3].strip()
        for line in out.splitlines()
        if line.count("│") >= 4 and line.split("│")[1].strip()
    }
    assert values["t_iters"] == "2" and values["lr_t"] == "0.0003" and values["ema"] == "0.99"
    assert values["steps"] == "1150" and values["batch_size"] == "8" and values["grid"] == "16"
    code, out, _ = run_main("solvers", "--keys", "not", "--preset", "tiny")
    assert "'embedded'" in out and "│ grid " in out and "│ 8 " in out
    for sid in list_solvers():  # every key of every solver says what it means
        cls = get_solver(sid)
        assert set(describe_keys(cls)) >= set(config_fields(cls)), sid


def test_data_show_writes_picture(tmp_path):
    res = run_cli("data", "show", "--pair", "3-5", "--grid", "8", "--out", str(tmp_path / "d.png"))
    assert res.returncode == 0, res.stderr
    assert "x_train" in res.stdout and (tmp_path / "d.png").is_file()


def test_data_show_scatters_vector_pairs(tmp_path):
    res = run_cli("data", "show", "--pair", "gauss:3", "--out", str(tmp_path / "v.png"))
    assert res.returncode == 0, res.stderr
    assert "vectors, dim 3" in res.stdout and "error" not in res.stderr
    assert (tmp_path / "v.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wrong_kind_or_unwritable_out_is_refused_before_work(tmp_path):
    from tests.conftest import run_main
    from tests.test_refusals import assert_refused

    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_main("render", str(tmp_path / "no-run"), "--out", str(tmp_path))
    assert_refused(code, err, "is a folder, expected a file")
    code, _, err = run_main("eval", str(tmp_path / "no-run"), "--out", str(blocker / "m.json"))
    assert_refused(code, err, "not writable")
    code, _, err = run_main("data", "show", "--pair", "3-5", "--out", str(blocker / "d.png"))
    assert_refused(code, err, "not writable")


def test_eval_prints_its_metrics_when_it_cannot_save_them(tmp_path, monkeypatch):
    import otzoo.runtime
    from tests.conftest import run_main

    out = tmp_path / "run"
    args = ("train", "--solver", "pot-linear", "--pair", "gauss:2", *TINY, "--out", str(out))
    assert run_main(*args)[0] == 0  # a vector pair: no judge to train for this test

    def full_disk(path, obj):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(otzoo.runtime, "atomic_write_json", full_disk)
    code, stdout, err = run_main("eval", str(out), "--out", str(tmp_path / "m.json"))
    assert code == 2 and "No space left" in err and len(err.strip().splitlines()) == 1
    printed = json.loads(stdout[stdout.index("{\n") :])
    assert printed["solver"] == "pot-linear" and "l2_uvp" in printed["metrics"]


def test_version_and_files_written_with_the_users_umask(tmp_path):
    import os

    from otzoo import __version__
    from tests.conftest import run_main

    code, out, _ = run_main("--version")
    assert code == 0 and out.strip() == f"otzoo {__version__}"
    old = os.umask(0o022)
    try:
        code, _, err = run_main(
            "train",
            "--solver",
            "not",
            "--pair",
            "3-5",
            *TINY,
            "--steps",
            "1",
            "--out",
            str(tmp_path / "r"),
        )
    finally:
        os.umask(old)
    assert code == 0, err
    for f in ("config.json", "metrics.json", "ckpt/step_0000001.pt"):
        assert (tmp_path / "r" / f).stat().st_mode & 0o777 == 0o644, f
