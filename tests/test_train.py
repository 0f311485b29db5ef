from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from otzoo import registry
from otzoo.config import parse_overrides, resolve
from otzoo.data import load_pair
from otzoo.errors import CheckpointError, ConfigError, DivergenceError
from otzoo.runs import list_checkpoints, load_checkpoint
from otzoo.train import train

NOT = registry.get_solver("not")


def tiny_run(steps: int, solver=NOT, **over):
    items = [
        f"steps={steps}",
        "ckpt_every=3",
        "image_every=3",
        *[f"{k}={v}" for k, v in over.items()],
    ]
    return resolve(solver, "3-5", "tiny", parse_overrides(items, solver), seed=0)


def event_tags(tb: Path) -> tuple[set[str], set[str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return set(acc.Tags()["scalars"]), set(acc.Tags()["images"])


def test_train_writes_checkpoint_tensorboard_and_metrics(tmp_path):
    res = train(tiny_run(3), tmp_path / "run", show_progress=False)
    out = tmp_path / "run"
    assert res.steps == 3
    assert [p.name for p in list_checkpoints(out)] == ["step_0000003.pt"]
    scalars, images = event_tags(out / "tb")
    assert {"not/loss_t", "not/loss_f", "metrics/transport_cost"} <= scalars
    assert "maps" in images
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and 0 <= metrics["color_preservation"] <= 1
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert metrics["transport_cost"] >= 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["solver"] == "not" and cfg["data"]["grid"] == 8


def test_resume_continues_and_matches_an_uninterrupted_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train(tiny_run(3), a, show_progress=False)
    res = train(tiny_run(6), a, resume=True, show_progress=False)
    assert res.steps == 6
    train(tiny_run(6), b, show_progress=False)
    sa = load_checkpoint(list_checkpoints(a)[-1])["state"]["modules"]["T"]
    sb = load_checkpoint(list_checkpoints(b)[-1])["state"]["modules"]["T"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_channels_last_builds_voxel_nets_in_that_layout_trains_alike_and_resumes(tmp_path):
    """The layout is a speed choice: same nets, weights within rounding of the usual layout's,
    and a resumed run equal to an uninterrupted one (restored weights keep the layout)."""
    run = tiny_run(3, channels_last="true")
    data = load_pair(run.pair, run.data, seed=0)
    solver = registry.build_solver(run, data, torch.device("cpu"))
    convs = [p for m in solver.modules.values() for p in m.parameters() if p.dim() == 5]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in convs)
    assert any(not p.is_contiguous() for p in convs)
    last, usual, resumed = tmp_path / "last", tmp_path / "usual", tmp_path / "resumed"
    train(tiny_run(6, channels_last="true"), last, show_progress=False)
    train(tiny_run(6), usual, show_progress=False)
    train(run, resumed, show_progress=False)
    train(tiny_run(6, channels_last="true"), resumed, resume=True, show_progress=False)
    sl, su, sr = (
        load_checkpoint(list_checkpoints(d)[-1])["state"]["modules"]["T"]
        for d in (last, usual, resumed)
    )
    assert all(torch.allclose(sl[k], su[k], atol=1e-4) for k in sl)
    assert all(torch.equal(sl[k], sr[k]) for k in sl)


def test_second_run_into_same_folder_is_refused(tmp_path):
    train(tiny_run(1), tmp_path, show_progress=False)
    with pytest.raises(CheckpointError, match="already holds a run"):
        train(tiny_run(1), tmp_path, show_progress=False)


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from otzoo_plugins._template import TranslationSolver

    class Exploding(TranslationSolver):
        def step(self, batches):
            out = super().step(batches)
            return {"loss": float("nan")} if self.steps_done >= 3 else out

    monkeypatch.setitem(registry._SOLVERS, "exploding", Exploding)
    monkeypatch.setattr(Exploding, "id", "exploding")
    with pytest.raises(DivergenceError, match="diverged at step 4") as err:
        train(tiny_run(10, solver=Exploding), tmp_path, show_progress=False)
    assert "\n" not in str(err.value)
    ckpts = list_checkpoints(tmp_path)
    assert [p.name for p in ckpts] == ["step_0000003.pt"]
    assert load_checkpoint(ckpts[0])["step"] == 3


def test_resume_refuses_checkpoint_of_another_solver(tmp_path):
    train(tiny_run(3), tmp_path, show_progress=False)
    weak = registry.get_solver("not-weak")
    run = tiny_run(6, solver=weak)
    with pytest.raises(CheckpointError, match="solver 'not'"):
        train(
            replace(run, train=replace(run.train, steps=6)),
            tmp_path,
            resume=True,
            show_progress=False,
        )


def test_known_map_pairs_train_on_fresh_draws_and_resume_exactly(tmp_path, monkeypatch):
    """w2:/gauss: pairs sample P and Q anew every batch (as the benchmark does), and the
    sampler's state is checkpointed: 3 + 3 resumed steps equal 6 straight ones."""
    from otzoo.batches import BlockSampler

    drawn: list[torch.Tensor] = []
    real_x = BlockSampler.x
    monkeypatch.setattr(
        BlockSampler, "x", lambda self, n=None: drawn.append(real_x(self, n)) or drawn[-1]
    )

    def run(steps: int):
        items = [f"steps={steps}", "ckpt_every=3", "batch_size=16"]
        return resolve(NOT, "gauss:2", "tiny", parse_overrides(items, NOT), seed=0)

    a, b = tmp_path / "a", tmp_path / "b"
    train(run(3), a, show_progress=False)
    assert len(drawn) == 3 * (NOT.presets["tiny"]["t_iters"] + 1)
    assert all(len(x) == 16 for x in drawn)
    train(run(6), a, resume=True, show_progress=False)
    train(run(6), b, show_progress=False)
    sa = load_checkpoint(list_checkpoints(a)[-1])["state"]["modules"]["T"]
    sb = load_checkpoint(list_checkpoints(b)[-1])["state"]["modules"]["T"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("style", ["extruded", "pointcloud"])
def test_rotated_digits_train_on_fresh_rotations_and_resume_exactly(tmp_path, monkeypatch, style):
    """--rotation z: every batch is a new rotation of random training digits (no batch
    repeats a volume of the fixed training set), and the augmentation stream is the sampler's
    checkpointed state: 3 + 3 resumed steps equal 6 straight ones."""
    from otzoo.batches import BatchSampler

    drawn: list[torch.Tensor] = []
    real_y = BatchSampler.y
    monkeypatch.setattr(
        BatchSampler, "y", lambda self, n=None: drawn.append(real_y(self, n)) or drawn[-1]
    )
    a, b = tmp_path / "a", tmp_path / "b"
    run = tiny_run(3, rotation="z", style=style)
    train(run, a, show_progress=False)
    fixed = {tuple(v.flatten().tolist()) for v in load_pair(run.pair, run.data, seed=0).y_train}
    assert drawn and not any(tuple(v.flatten().tolist()) in fixed for v in drawn[0])
    train(tiny_run(6, rotation="z", style=style), a, resume=True, show_progress=False)
    train(tiny_run(6, rotation="z", style=style), b, show_progress=False)
    sa = load_checkpoint(list_checkpoints(a)[-1])["state"]["modules"]["T"]
    sb = load_checkpoint(list_checkpoints(b)[-1])["state"]["modules"]["T"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("solver_id", registry.list_solvers())
def test_amp_dtype_follows_mode_device_and_the_solvers_amp_safe(solver_id):
    from otzoo.train import amp_dtype

    cls = registry.get_solver(solver_id)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    bf16 = torch.bfloat16 if cls.amp_safe else None
    assert amp_dtype("off", cpu, cls) is None and amp_dtype("off", cuda, cls) is None
    assert amp_dtype("auto", cpu, cls) is None and amp_dtype("auto", cuda, cls) is bf16
    assert amp_dtype("bf16", cpu, cls) is bf16 and amp_dtype("bf16", cuda, cls) is bf16
    with pytest.raises(ConfigError, match="amp=fp8"):
        amp_dtype("fp8", cpu, cls)
    # the built-ins' facts: the saddle solvers are bf16-safe, double backward / float64 is not
    expected = {"not": True, "not-weak": True, "otm": True, "w2gn": False, "amortized": False}
    assert cls.amp_safe is expected.get(solver_id, cls.amp_safe)


def test_cpu_bf16_run_trains_under_autocast(tmp_path, monkeypatch):
    seen: list[tuple[bool, torch.dtype]] = []
    real_step = NOT.step

    def step(self, batches):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return real_step(self, batches)

    monkeypatch.setattr(NOT, "step", step)
    res = train(tiny_run(3, amp="bf16"), tmp_path / "run", show_progress=False)
    assert seen == [(True, torch.bfloat16)] * 3
    assert res.steps == 3 and all(math.isfinite(v) for v in res.metrics.values())
    seen.clear()
    train(tiny_run(2, amp="off"), tmp_path / "off", show_progress=False)
    assert [on for on, _ in seen] == [False, False]
