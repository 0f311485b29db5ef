"""evaluate(): known answers on tiny data, skipped metrics, NaN robustness, seeded noise."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from otzoo.data import DataConfig, load_pair
from otzoo.evaluate import METRIC_NAMES, evaluate, json_safe, reference_rows, score_outputs
from otzoo.judge import JudgeConfig, train_judge

DATA = DataConfig(grid=8, max_per_digit=40)
JUDGE = JudgeConfig(epochs=1, min_steps=40, batch_size=16, base=4, feature_dim=16)


@pytest.fixture(scope="module")
def data():
    return load_pair("3-5", DATA, seed=0)


@pytest.fixture(scope="module")
def judge():
    return train_judge(DATA, 0, JUDGE)


def test_identity_map_known_answers(data, judge):
    m = evaluate(lambda x: x.clone(), data, judge)
    assert m["transport_cost"] == 0.0
    assert m["color_preservation"] == 1.0
    assert "diversity" not in m and "mse_to_clean" not in m  # deterministic, no clean originals
    assert set(m) == set(METRIC_NAMES) - {"diversity", "mse_to_clean"}
    assert all(math.isfinite(v) for v in m.values())
    assert m["fid"] > 0 and m["w2_to_target"] > 0  # threes are not fives
    expected = float((judge.predict(data.x_test) == 5).double().mean())
    assert m["target_accuracy"] == pytest.approx(expected)


def test_real_target_as_outputs(data, judge):
    n = len(data.x_test)
    assert len(data.y_test) == n
    # one batch, so the "map" can hand back the real target test samples in order
    m = evaluate(lambda x: data.y_test[: len(x)], data, judge, batch_size=n)
    on_targets = float((judge.predict(data.y_test) == 5).double().mean())
    assert m["target_accuracy"] == pytest.approx(on_targets)
    assert m["fid"] == pytest.approx(0.0, abs=1e-6)  # Frechet of a feature set with itself
    assert m["w2_to_target"] == pytest.approx(0.0, abs=1e-9)  # W2 between identical sets
    assert m["fid_floor"] > 0
    refs = reference_rows(data, judge)
    assert refs["real target"] == pytest.approx(m, nan_ok=True)
    assert refs["identity"]["transport_cost"] == 0.0


def test_diverged_map_gives_nan_not_crash(data, judge):
    m = evaluate(lambda x: x * float("nan"), data, judge, stochastic=True)
    for k in ("transport_cost", "color_preservation", "target_accuracy", "fid", "w2_to_target"):
        assert math.isnan(m[k]), k
    assert math.isnan(m["diversity"])
    assert math.isfinite(m["fid_floor"])  # a property of the real data, still shown
    assert json_safe(m)["fid"] is None and json_safe(m)["fid_floor"] == m["fid_floor"]


def test_stochastic_diversity_is_seeded_and_measured(data):
    def noisy(x):
        return x + 0.1 * torch.randn_like(x)

    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = evaluate(noisy, data, stochastic=True, diversity_inputs=6, diversity_draws=8, seed=3)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is untouched
    b = evaluate(noisy, data, stochastic=True, diversity_inputs=6, diversity_draws=8, seed=3)
    c = evaluate(noisy, data, stochastic=True, diversity_inputs=6, diversity_draws=8, seed=4)
    assert a == b and a != c
    assert a["diversity"] == pytest.approx(0.01, rel=0.15)  # variance of N(0, 0.1^2) noise
    assert a["transport_cost"] == pytest.approx(0.01, rel=0.15)


def test_no_judge_or_no_target_digit_skips_judge_metrics(data, judge):
    m = evaluate(lambda x: x, data, None)
    assert not {"target_accuracy", "fid", "fid_floor"} & set(m)
    no_target = dataclasses.replace(data, spec=SimpleNamespace(target=None, raw="x"))
    m = evaluate(lambda x: x, no_target, judge)
    assert not {"target_accuracy", "fid", "fid_floor"} & set(m)
    assert m["transport_cost"] == 0.0


def test_restoration_pair_gets_mse_to_clean(data):
    clean = data.x_test.clone()
    noisy = dataclasses.replace(data, extras={"x_test_clean": clean})
    assert evaluate(lambda x: x, noisy)["mse_to_clean"] == 0.0
    shifted = evaluate(lambda x: x + 0.5, noisy)
    assert shifted["mse_to_clean"] == pytest.approx(0.25)


def test_unequal_shapes_skip_what_does_not_apply(data, judge):
    """One-channel targets: no transport cost, no colour check, no judge; W2 and the lit
    share (any voxel outputs) still apply."""
    one = dataclasses.replace(
        data, y_shape=(1, 8, 8, 8), y_test=data.y_test[:, :1], y_train=data.y_train[:, :1]
    )
    m = evaluate(lambda x: x[:, :1], one, judge)
    assert set(m) == {"w2_to_target", "lit_share"}
    assert math.isfinite(m["w2_to_target"]) and 0 < m["lit_share"] < 1


def test_score_outputs_counts_only_given_inputs(data):
    x = data.x_test[:5]
    m = score_outputs(x, x.clone(), data)
    assert m["transport_cost"] == 0.0 and m["color_preservation"] == 1.0


def test_no_identity_row_when_shapes_differ(judge):
    noise = load_pair("noise-5:2", DATA, seed=0)  # 3 x 2^3 latents -> 3 x 8^3 fives
    refs = reference_rows(noise, judge)
    assert "identity" not in refs
    assert refs["real target"]["fid"] == pytest.approx(0.0, abs=1e-6)


def test_lit_share_sees_a_hazy_map(data, judge):
    """A faint haze over the background keeps digit and color but lights the whole grid."""
    clean = evaluate(lambda x: x.clone(), data, judge)
    hazy = evaluate(lambda x: torch.maximum(x, torch.full_like(x, -0.7)), data, judge)
    assert clean["lit_share"] < 0.5 and hazy["lit_share"] == 1.0
    assert hazy["color_preservation"] == clean["color_preservation"]
