from __future__ import annotations

import re

import pytest

from otzoo.config import RunConfig, parse_overrides, resolve
from otzoo.errors import ConfigError
from otzoo.registry import get_solver

NOT = get_solver("not")


def test_presets_and_overrides_route_to_their_section():
    run = resolve(NOT, "3-5", "tiny", parse_overrides(["lr_t=3e-4", "grid=16", "steps=7"], NOT))
    assert run.solver_config.lr_t == 3e-4 and run.data.grid == 16 and run.train.steps == 7
    assert run.solver_config.t_iters == NOT.presets["tiny"]["t_iters"]
    # the core preset's batch (32) and not's EMA give way to not's own for unrotated digits (8,
    # 0.99), and to --set
    small = resolve(NOT, "3-5", "quick")
    assert (small.train.batch_size, small.train.steps, small.solver_config.ema) == (8, 1150, 0.99)
    rotated = resolve(NOT, "3-5", "quick", {"rotation": "z"})
    assert (rotated.train.batch_size, rotated.solver_config.ema) == (32, 0.98)
    # rotated digits: no R1, real sources as negatives, 520 steps (docs/results.md)
    assert (rotated.solver_config.r1, rotated.solver_config.neg_source) == (0.0, 1.0)
    assert rotated.train.steps == 520
    weak = resolve(get_solver("not-weak"), "3-5", "quick", {"rotation": "z"}).solver_config
    assert (weak.r1, weak.neg_source) == (300.0, 0.0)
    otm = resolve(get_solver("otm"), "3-5", "quick")
    assert (otm.train.batch_size, otm.train.steps, otm.solver_config.ema) == (4, 2100, 0.995)
    otm_z = resolve(get_solver("otm"), "3-5", "quick", {"rotation": "z"})
    assert (otm_z.train.batch_size, otm_z.train.steps) == (32, 440)
    assert (
        resolve(get_solver("otm"), "3-5", "quick", {"rotation": "z", "r1": 30.0}).solver_config.r1
        == 30.0
    )
    assert resolve(NOT, "noisy-clean", "quick").train.batch_size == 32
    weak = resolve(get_solver("not-weak"), "3-5", "quick")
    assert (weak.train.batch_size, weak.train.steps, weak.solver_config.z_size) == (8, 980, 2)
    assert weak.solver_config.ema == 0.995
    assert weak.train.channels_last and not small.train.channels_last
    assert resolve(get_solver("not-weak"), "noisy-clean", "quick").solver_config.z_size == 8
    assert resolve(NOT, "3-5", "quick", {"batch_size": 4}).train.batch_size == 4


def test_amortized_maps_digits_by_the_conjugate_point_and_vectors_by_the_gradient():
    amortized = get_solver("amortized")
    quick = resolve(amortized, "3-5", "quick")
    assert quick.solver_config.map == "conjugate" and quick.train.channels_last
    assert quick.solver_config.hue_plane and not quick.solver_config.hue_plane_train
    assert resolve(amortized, "3-5", "quick", {"rotation": "z"}).solver_config.map == "conjugate"
    for pair, preset in (("w2:4", "quick"), ("3-5", "tiny"), ("3-5", "full")):
        assert resolve(amortized, pair, preset).solver_config.map == "gradient"


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


def test_a_schedule_over_the_run_follows_the_users_steps():
    """lr_schedule=cosine with lr_decay_steps None spans the run, whatever --steps says; an
    explicit length stays; a preset without a schedule keeps a constant lr."""
    amortized = get_solver("amortized")
    run = resolve(amortized, "w2:4", "quick", {"steps": 40})
    assert run.train.lr_schedule == "cosine" and run.train.decay_steps() == 40
    run = resolve(amortized, "w2:4", "quick", {"steps": 40, "lr_decay_steps": 9})
    assert run.train.decay_steps() == 9
    assert resolve(amortized, "3-5", "full", {"steps": 40}).train.decay_steps() == 40
    tiny = resolve(amortized, "3-5", "tiny", {"steps": 40}).train
    assert tiny.lr_schedule == "constant" and tiny.decay_steps() == 0


@pytest.mark.parametrize("sid", ["not", "otm", "w2gn", "amortized"])
def test_cosine_schedule_decays_and_resumes(sid):
    """The loop sets lr = lr * cosine_factor(steps_done, decay); a reloaded solver (as on
    --resume) continues the same schedule instead of restarting at the initial lr."""
    import torch

    from otzoo.data.benchmarks import gaussian_pair
    from otzoo.loop import cosine_factor
    from otzoo.solver import PairInfo
    from tests.conftest import fit, pair_batches

    cls = get_solver(sid)
    config = resolve(cls, "gauss:2", "tiny").solver_config
    info = PairInfo(kind="vector", x_shape=(2,), y_shape=(2,))
    torch.manual_seed(0)
    solver = cls(config, info, torch.device("cpu"))
    batches = pair_batches(gaussian_pair(2, seed=0), 16)
    base = [g["lr"] for o in solver.optimizers.values() for g in o.param_groups]
    for step in range(3):
        fit(solver, batches, 1, lr_decay_steps=4)
        lrs = [g["lr"] for o in solver.optimizers.values() for g in o.param_groups]
        assert lrs == pytest.approx([b * cosine_factor(step, 4) for b in base])
    assert cosine_factor(2, 4) == pytest.approx(0.5, abs=1e-3) and cosine_factor(9, 4) < 1e-3
    state = solver.state_dict()
    torch.manual_seed(0)
    again = cls(config, info, torch.device("cpu"))
    again.load_state_dict(state)
    fit(again, batches, 1, lr_decay_steps=4)
    lrs = [g["lr"] for o in again.optimizers.values() for g in o.param_groups]
    assert lrs == pytest.approx([b * cosine_factor(3, 4) for b in base])


def test_a_cpu_budget_ends_the_cosine_decay_where_it_stops_the_run(monkeypatch):
    """With `cpu_budget_s` the decay's progress is the larger of the step share and the budget
    share: a run the budget cuts at 4 of 100 steps ends at the schedule's low lr, and a run its
    steps end first keeps the step schedule (the CPU clock is faked: 0.5 s a step)."""
    import time

    import torch

    from otzoo.data.benchmarks import gaussian_pair
    from otzoo.loop import cosine_factor, run_steps
    from otzoo.solver import PairInfo
    from tests.conftest import pair_batches

    cls = get_solver("not")
    config = resolve(cls, "gauss:2", "tiny").solver_config
    info = PairInfo(kind="vector", x_shape=(2,), y_shape=(2,))
    batches = pair_batches(gaussian_pair(2, seed=0), 16)
    for budget, decay, steps, stopped, factors in [
        (2.0, 100, 4, "cpu budget", [cosine_factor(0, 100, done=k / 4) for k in range(4)]),
        (100.0, 3, 3, "done", [cosine_factor(k, 3) for k in range(3)]),
    ]:
        clock = iter(0.5 * k for k in range(10_000))
        monkeypatch.setattr(time, "process_time", lambda clock=clock: next(clock))
        torch.manual_seed(0)
        solver = cls(config, info, torch.device("cpu"))
        group = solver.optimizers["T"].param_groups[0]
        base, seen = group["lr"], []
        result = run_steps(
            solver,
            batches,
            decay,
            lr_decay_steps=decay,
            cpu_budget_s=budget,
            on_step=lambda _, seen=seen, group=group: seen.append(group["lr"]),
        )
        assert result.steps_done == steps
        assert result.stopped == stopped
        assert seen == pytest.approx([base * f for f in factors])
    assert cosine_factor(3, 100) > 0.99 and cosine_factor(3, 100, done=0.75) < 0.15  # the fit


def test_the_resolved_config_does_not_depend_on_the_machine(monkeypatch):
    """The tuned settings are the same on a CPU and with CUDA: no device-dependent batch."""
    cpu = [resolve(get_solver(s), p, "quick") for s in ("not", "otm") for p in ("3-5", "w2:8")]
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    cuda = [resolve(get_solver(s), p, "quick") for s in ("not", "otm") for p in ("3-5", "w2:8")]
    assert cpu == cuda
    assert resolve(get_solver("otm"), "w2:8", "quick").train.batch_size == 256


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("steps", 0, "integer >= 1"),
        ("batch_size", -3, "integer >= 1"),
        ("amp", "fp8", "auto | bf16 | off"),
        ("lr_schedule", "linear", "constant | cosine"),
        ("lr_decay_steps", 0, ">= 1 or none"),
    ],
)
def test_train_values_out_of_range_are_one_line(key, value, allowed):
    with pytest.raises(ConfigError, match=re.escape(allowed)) as err:
        resolve(NOT, "3-5", "tiny", {key: value})
    assert f"{key}={value!r}" in str(err.value) and "\n" not in str(err.value)


def test_typed_values_and_strings_resolve_alike():
    typed = resolve(NOT, "3-5", "tiny", {"grid": 9, "steps": 5, "hidden": (16, 8)})
    text = resolve(NOT, "3-5", "tiny", parse_overrides(["grid=9", "steps=5", "hidden=16,8"], NOT))
    assert typed == text and typed.data.grid == 9


def test_pair_specs_are_stored_normalised():
    assert resolve(NOT, " 3-5 ", "tiny").pair == "3-5"


def test_pair_presets_see_the_data_variant_the_user_chose():
    """Layer 4 sees the run's data config, --set strings included: otcfm's quick preset takes a
    larger plan on rotated digits only, and the user's own value still wins over it."""
    otcfm = get_solver("otcfm")
    plain = resolve(otcfm, "3-5", "quick").solver_config.ot_batch
    rotated = resolve(otcfm, "3-5", "quick", parse_overrides(["rotation=z"], otcfm))
    assert rotated.data.rotation == "z" and rotated.solver_config.ot_batch == 2 * plain
    assert resolve(otcfm, "3-5", "quick", {"rotation": "3d"}).solver_config.ot_batch == 2 * plain
    assert rotated.solver_config.ema == 0.995 > resolve(otcfm, "3-5", "quick").solver_config.ema
    assert rotated.train.select_every == 0  # map selection: rotated point clouds only
    cloud = resolve(otcfm, "3-5", "quick", {"rotation": "z", "style": "pointcloud"})
    assert cloud.train.select_every == 200
    assert resolve(otcfm, "3-5", "quick", {"style": "pointcloud"}).train.select_every == 0
    mine = resolve(otcfm, "3-5", "quick", {"rotation": "z", "ot_batch": 512})
    assert mine.solver_config.ot_batch == 512
    with pytest.raises(ConfigError, match="not a config field"):  # as before, not while peeking
        resolve(otcfm, "3-5", "quick", {"rotatoin": "z"})
