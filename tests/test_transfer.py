"""Transfer learning (`--init-from RUN_DIR`): a new run starts from another run's final networks
(EMA copies included) with a fresh optimizer at step 0; data options may differ, the solver and
the shapes may not; every refusal is one line, exit status 2, and writes nothing; a resumed
warm-started run continues from its own checkpoint."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from otzoo import registry
from otzoo.compare import CompareRequest, compare
from otzoo.config import parse_overrides, resolve
from otzoo.data import load_pair
from otzoo.errors import CheckpointError
from otzoo.judge import JudgeConfig
from otzoo.runs import list_checkpoints, load_checkpoint
from otzoo.train import train
from otzoo.warm_start import load_init
from tests.conftest import TINY, files_under, run_main

NOT = registry.get_solver("not")
TRAIN = ("train", "--pair", "3-5", *TINY, "--threads", "1", "--steps", "2")


def tiny_run(steps: int, solver=NOT, pair: str = "3-5", **over):
    items = [
        f"steps={steps}",
        "ckpt_every=3",
        "image_every=0",
        *[f"{k}={v}" for k, v in over.items()],
    ]
    return resolve(solver, pair, "tiny", parse_overrides(items, solver), seed=0)


@pytest.fixture(scope="module")
def init_dir(tmp_path_factory) -> Path:
    """A finished tiny `not` run with an EMA copy of its map (3 steps, one checkpoint)."""
    out = tmp_path_factory.mktemp("transfer") / "init"
    train(tiny_run(3, ema=0.9), out, show_progress=False)
    return out


def modules_of(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    return load_checkpoint(list_checkpoints(run_dir)[-1])["state"]["modules"]


def same_modules(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[m].keys() == b[m].keys() and all(torch.equal(a[m][k], b[m][k]) for k in a[m]) for m in a
    )


# ----------------------------------------------------------------------------- (1) what is loaded


def test_warm_start_loads_exactly_the_final_networks_and_nothing_else(init_dir):
    run = tiny_run(3, ema=0.9, rotation="z")  # other data options: allowed
    data = load_pair(run.pair, run.data, seed=run.seed)
    solver = registry.build_solver(run, data, torch.device("cpu"))
    assert not same_modules(
        {k: m.state_dict() for k, m in solver.modules.items()}, modules_of(init_dir)
    )
    step = load_init(init_dir, solver)
    assert step == 3 and solver.steps_done == 0 and solver.warm_started
    assert "T_ema" in solver.modules  # the EMA copy comes along with T and f
    assert same_modules(
        {k: m.state_dict() for k, m in solver.modules.items()}, modules_of(init_dir)
    )
    assert all(not opt.state for opt in solver.optimizers.values())  # a fresh optimizer


def test_train_records_the_warm_start_in_config_json(init_dir, tmp_path):
    out = tmp_path / "warm"
    code, stdout, err = run_main(
        *TRAIN, "--solver", "not", "--set", "ema=0.9", "--rotation", "z",
        "--init-from", str(init_dir), "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert f"warm-started from {init_dir}" in " ".join(stdout.split())
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["init_from"], cfg["init_step"], cfg["data"]["rotation"]) == (str(init_dir), 3, "z")
    ckpt = load_checkpoint(list_checkpoints(out)[-1])
    assert ckpt["step"] == 2 and ckpt["config"]["init_from"] == str(init_dir)


def test_a_cold_run_records_no_init(tmp_path):
    train(tiny_run(1), tmp_path / "cold", show_progress=False)
    cfg = json.loads((tmp_path / "cold" / "config.json").read_text())
    assert cfg["init_from"] is None and cfg["init_step"] is None


# ----------------------------------------------------------------------------- (2) it helps


def test_a_warm_start_begins_far_better_than_a_fresh_run(tmp_path):
    """Gaussians in R^2 with a known map: 150 steps reach L2-UVP ~0.7% (measured); one step
    from random weights is ~680%, one step from the trained weights stays near 0.7%."""
    fast = {"batch_size": 128, "t_iters": 3, "lr_t": 3e-3, "lr_f": 3e-3, "ckpt_every": 1000}
    train(tiny_run(150, pair="gauss:2", **fast), tmp_path / "init", show_progress=False)
    fresh = train(tiny_run(1, pair="gauss:2", **fast), tmp_path / "fresh", show_progress=False)
    warm_run = replace(tiny_run(1, pair="gauss:2", **fast), init_from=str(tmp_path / "init"))
    warm = train(warm_run, tmp_path / "warm", show_progress=False)
    assert warm.metrics["l2_uvp"] < 5 < 50 < fresh.metrics["l2_uvp"], (warm.metrics, fresh.metrics)


@pytest.mark.parametrize("solver_id", ["w2gn", "amortized"])
def test_a_warm_started_solver_skips_its_first_step_pretraining(solver_id, monkeypatch):
    """The identity pre-training at steps_done == 0 would erase the loaded potentials."""
    from otzoo.batches import for_pair

    cls = registry.get_solver(solver_id)
    over = {"potential": "icnn"} if solver_id == "amortized" else {}
    run = tiny_run(1, solver=cls, pair="gauss:2", **over)
    data = load_pair(run.pair, run.data, seed=0)
    solver = registry.build_solver(run, data, torch.device("cpu"))
    module = type(solver).__module__
    monkeypatch.setattr(f"{module}.fit_identity", lambda *a, **k: pytest.fail("pre-trained"))
    solver.warm_started = True
    solver.step(for_pair(data, 8, seed=1, device=torch.device("cpu")))


# ----------------------------------------------------------------------------- (3) refusals


def assert_refused(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("otzoo: error: --init-from "), err
    for n in needles:
        assert n in lines[0], lines[0]


def refusal_dirs(init_dir: Path, root: Path) -> dict[str, Path]:
    """Folders that are not usable warm starts: missing, empty, a config without a checkpoint,
    a compare output (its per-solver runs are usable, the output itself is not)."""
    (root / "empty").mkdir()
    (root / "nockpt").mkdir()
    shutil.copy(init_dir / "config.json", root / "nockpt")
    (root / "cmp" / "runs" / "not").mkdir(parents=True)
    shutil.copy(init_dir / "config.json", root / "cmp" / "runs" / "not")
    return {n: root / n for n in ("missing", "empty", "nockpt", "cmp")}


CASES = {
    "other solver": (["--solver", "otm"], None, "a run of solver 'not', not 'otm'"),
    "other channels": (["--solver", "not", "--coloring", "none"], None, "3x8x8x8 -> 3x8x8x8, this"),
    "other grid": (["--solver", "not", "--grid", "10"], None, "use that run's --grid"),
    "other widths": (["--solver", "not", "--set", "t_base=4"], None, "[8, 3, 3, 3, 3] in the"),
    "missing folder": (["--solver", "not"], "missing", "no such folder"),
    "no config": (["--solver", "not"], "empty", "not a run folder (no config.json)"),
    "no checkpoint": (["--solver", "not"], "nockpt", "no checkpoint yet"),
    "compare output": (["--solver", "not"], "cmp", "cmp/runs/not"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_warm_start_writes_nothing(case, init_dir, tmp_path):
    extra, folder, needle = CASES[case]
    source = init_dir if folder is None else refusal_dirs(init_dir, tmp_path)[folder]
    before = files_under(init_dir)
    out = tmp_path / "run"
    code, _, err = run_main(*TRAIN, *extra, "--init-from", str(source), "--out", str(out))
    assert_refused(code, err, needle)
    assert not out.exists(), sorted(files_under(out))
    assert files_under(init_dir) == before  # the source run is only read


def test_resume_refuses_a_new_init(init_dir, tmp_path):
    out = tmp_path / "run"
    train(tiny_run(1), out, show_progress=False)
    before = files_under(out)
    code, _, err = run_main("train", "--resume", "--init-from", str(init_dir), "--out", str(out))
    assert code == 2 and "drop --init-from" in err and len(err.strip().splitlines()) == 1, err
    assert files_under(out) == before


def test_compare_refuses_an_init_of_a_solver_it_does_not_train(init_dir, tmp_path):
    out = tmp_path / "cmp"
    code, _, err = run_main(
        "compare", "--solvers", "otm", "--pair", "3-5", *TINY, "--threads", "1",
        "--init-from", str(init_dir), "--out", str(out),
    )  # fmt: skip
    assert_refused(code, err, "not among --solvers (otm)", "add not to --solvers")
    assert not out.exists()


def test_compare_refuses_a_misfit_init_before_the_judge_or_any_file(
    init_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr("otzoo.compare.get_judge", lambda *a, **k: pytest.fail("judge trained"))
    out = tmp_path / "cmp"
    code, _, err = run_main(
        "compare", "--solvers", "not,otm", "--pair", "3-5", *TINY, "--threads", "1",
        "--coloring", "none", "--init-from", str(init_dir), "--out", str(out),
    )  # fmt: skip
    assert_refused(code, err, "1x8x8x8")
    assert not out.exists()


def test_a_solver_without_networks_has_nothing_to_warm_start(init_dir, tmp_path):
    pot = registry.get_solver("pot")
    run = tiny_run(1, solver=pot)
    data = load_pair(run.pair, run.data, seed=0)
    solver = registry.build_solver(run, data, torch.device("cpu"))
    cfg = json.loads((init_dir / "config.json").read_text())
    fake = tmp_path / "potrun"
    shutil.copytree(init_dir, fake)
    cfg.update(solver="pot", solver_config={})
    (fake / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="has no networks to warm-start"):
        load_init(fake, solver)


# ----------------------------------------------------------------------------- (4) resume


def test_resume_of_a_warm_started_run_continues_from_its_own_checkpoint(init_dir, tmp_path):
    """Trained 3 steps, resumed to 6: bit-identical to 6 uninterrupted warm-started steps (the
    init re-applied on resume would throw away the first 3)."""
    warm = {"init_from": str(init_dir)}
    a, b = tmp_path / "a", tmp_path / "b"
    train(replace(tiny_run(3, ema=0.9), **warm), a, show_progress=False)
    code, _, err = run_main(
        "train", "--resume", "--steps", "6", "--quiet", "--threads", "1", "--out", str(a)
    )
    assert code == 0, err
    train(replace(tiny_run(6, ema=0.9), **warm), b, show_progress=False)
    assert same_modules(modules_of(a), modules_of(b))
    assert not same_modules(modules_of(a), modules_of(init_dir))
    cfg = json.loads((a / "config.json").read_text())
    assert (cfg["init_from"], cfg["init_step"], cfg["train"]["steps"]) == (str(init_dir), 3, 6)


def test_a_warm_run_that_died_before_its_first_checkpoint_starts_warm_again(init_dir, tmp_path):
    """No checkpoint to continue from: the stored init is the start, as in the first attempt."""
    warm = {"init_from": str(init_dir)}
    a, b = tmp_path / "a", tmp_path / "b"
    train(replace(tiny_run(3, ema=0.9), **warm), a, show_progress=False)
    for ckpt in list_checkpoints(a):
        ckpt.unlink()
    train(replace(tiny_run(3, ema=0.9), **warm), a, resume=True, show_progress=False)
    train(replace(tiny_run(3, ema=0.9), **warm), b, show_progress=False)
    assert same_modules(modules_of(a), modules_of(b))


# ----------------------------------------------------------------------------- compare


def test_compare_warm_starts_the_solver_of_each_init_run(init_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OTZOO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cmp"
    req = CompareRequest(
        out=out,
        solvers=("not", "otm"),
        pair="3-5",
        preset="tiny",
        values={"steps": 2, "device": "cpu"},
        sets=("ema=0.9",),
        init_from=(init_dir,),
        judge=JudgeConfig(epochs=1, min_steps=20, batch_size=16, base=4, feature_dim=16),
        show_progress=False,
    )
    compare(req, log=lambda _msg: None)
    not_cfg = json.loads((out / "runs" / "not" / "config.json").read_text())
    otm_cfg = json.loads((out / "runs" / "otm" / "config.json").read_text())
    assert (not_cfg["init_from"], not_cfg["init_step"]) == (str(init_dir), 3)
    assert otm_cfg["init_from"] is None
    report = (out / "report.md").read_text()
    assert f"warm-started from the final networks of `{init_dir}`" in report
    # and the per-solver folder of a compare output is itself a usable warm start
    code, _, err = run_main(
        *TRAIN, "--solver", "not", "--set", "ema=0.9",
        "--init-from", str(out / "runs" / "not"), "--out", str(tmp_path / "again"),
    )  # fmt: skip
    assert code == 0, err
