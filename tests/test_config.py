from __future__ import annotations

import pytest

from otzoo.config import RunConfig, parse_overrides, resolve
from otzoo.errors import ConfigError
from otzoo.registry import get_solver

NOT = get_solver("not")


def test_presets_and_overrides_route_to_their_section():
    run = resolve(NOT, "3-5", "tiny", parse_overrides(["lr_t=3e-4", "grid=16", "steps=7"], NOT))
    assert run.solver_config.lr_t == 3e-4 and run.data.grid == 16 and run.train.steps == 7
    assert run.solver_config.t_iters == NOT.presets["tiny"]["t_iters"]
    assert resolve(NOT, "3-5", "quick").train.batch_size == 32


def test_round_trip_through_dict():
    run = resolve(NOT, "3-5", "tiny", parse_overrides(["hidden=16,8"], NOT), seed=4)
    again = RunConfig.from_dict(run.to_dict(), NOT)
    assert again == run and again.solver_config.hidden == (16, 8)


@pytest.mark.parametrize(
    "item, match",
    [
        ("lr=1", "unknown key"),
        ("lr_tt=1", "did you mean lr_t"),
        ("steps=abc", "type int"),
        ("steps=1.5", "type int"),
        ("t_residual=maybe", "type bool"),
        ("novalue", "key=value"),
    ],
)
def test_bad_overrides_are_one_line(item, match):
    with pytest.raises(ConfigError, match=match) as err:
        parse_overrides([item], NOT)
    assert "\n" not in str(err.value)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve(NOT, "3-5", "huge")


def test_user_steps_carry_a_schedule_that_spans_the_preset_run():
    amortized = get_solver("amortized")
    run = resolve(amortized, "w2:4", "quick", {"steps": 40})
    assert run.train.steps == run.solver_config.lr_decay_steps == 40
    run = resolve(amortized, "w2:4", "quick", {"steps": 40, "lr_decay_steps": 9})
    assert run.solver_config.lr_decay_steps == 9
    assert resolve(amortized, "3-5", "full", {"steps": 40}).solver_config.lr_decay_steps == 40
    # no schedule in the preset (constant lr): none appears
    assert resolve(amortized, "3-5", "tiny", {"steps": 40}).solver_config.lr_decay_steps == 0


@pytest.mark.parametrize("sid", ["not", "otm", "w2gn"])
def test_cosine_schedule_decays_and_resumes(sid):
    """lr follows lr * cosine_factor(steps_done, lr_decay_steps); a reloaded solver (as on
    --resume) continues the same schedule instead of restarting at the initial lr."""
    import torch

    from otzoo.data.benchmarks import gaussian_pair
    from otzoo.solver import PairInfo, cosine_factor
    from tests.conftest import pair_batches

    cls = get_solver(sid)
    config = cls.make_config({**cls.presets["tiny"], "lr_decay_steps": 4})
    info = PairInfo(kind="vector", x_shape=(2,), y_shape=(2,))
    torch.manual_seed(0)
    solver = cls(config, info, torch.device("cpu"))
    batches = pair_batches(gaussian_pair(2, seed=0), 16)
    base = [g["lr"] for o in solver.optimizers.values() for g in o.param_groups]
    for step in range(3):
        solver.step(batches)
        solver.steps_done = step + 1
        lrs = [g["lr"] for o in solver.optimizers.values() for g in o.param_groups]
        assert lrs == pytest.approx([b * cosine_factor(step, 4) for b in base])
    assert cosine_factor(2, 4) == pytest.approx(0.5, abs=1e-3) and cosine_factor(9, 4) < 1e-3
    state = solver.state_dict()
    torch.manual_seed(0)
    again = cls(config, info, torch.device("cpu"))
    again.load_state_dict(state)
    again.step(batches)
    lrs = [g["lr"] for o in again.optimizers.values() for g in o.param_groups]
    assert lrs == pytest.approx([b * cosine_factor(3, 4) for b in base])


def test_cuda_runs_get_larger_batches_unless_the_user_chose_one(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    assert resolve(NOT, "3-5", "quick").train.batch_size == 32 * 4
    assert resolve(NOT, "3-5", "quick", {"batch_size": 16}).train.batch_size == 16
    assert resolve(NOT, "3-5", "quick", {"device": "cpu"}).train.batch_size == 32
    assert resolve(NOT, "3-5", "quick", {"cuda_batch_scale": 1}).train.batch_size == 32
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert resolve(NOT, "3-5", "quick").train.batch_size == 32
