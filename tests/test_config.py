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
