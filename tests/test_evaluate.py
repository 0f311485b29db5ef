"""evaluate(): known answers on tiny data, skipped metrics, NaN robustness, seeded noise.

The judged metrics are checked against `judge8` (tests/conftest.py), a small judge that tells
digits apart (0.85 test accuracy at 8^3; no three called a five), so scoring against the wrong
digit, a judge that never trained, or a Frechet distance that ignores its inputs all fail here.
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from otzoo.data import DataConfig, load_digit_set, load_pair
from otzoo.data.transforms import RGBY_OCCUPANCY, unit_range
from otzoo.evaluate import evaluate, quality_warnings, reference_rows, score_outputs
from otzoo.judge import Judge
from otzoo.nets.classifier import Classifier3D
from otzoo.report import METRIC_NAMES, json_safe
from tests.conftest import JUDGE_DATA_SETTINGS, METRICS_OF_OTHER_MAPS

DATA = DataConfig(**JUDGE_DATA_SETTINGS)  # the judge's own data settings: 20 test threes


@pytest.fixture(scope="module")
def data():
    return load_pair("3-5", DATA, seed=0)


@pytest.fixture
def judge(judge8):
    return judge8


def other_digit(d: int, n: int) -> torch.Tensor:
    """n training samples of digit d (never a pair's test sample)."""
    ds = load_digit_set(DATA, 0)
    return ds.volumes[(ds.digit == d) & ~ds.is_test][:n]


def recolor(x: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
    """rgby voxels [N, 3, D, H, W] in [-1, 1] redrawn in `colors` [N] at the same intensity
    (the intensity V is the smallest channel: the occupancy channels hold 1)."""
    u = unit_range(x)
    v = u.amin(dim=1, keepdim=True)
    occ = RGBY_OCCUPANCY[colors][:, :, None, None, None] * (u.amax(dim=1, keepdim=True) > 0)
    return (occ + (1 - occ) * v) * 2 - 1


def test_identity_map_known_answers(data, judge):
    m = evaluate(lambda x: x.clone(), data, judge)
    assert m["transport_cost"] == 0.0
    assert m["color_preservation"] == 1.0 and m["color_purity"] == 1.0
    assert "diversity" not in m and "mse_to_clean" not in m  # deterministic, no clean originals
    assert set(m) == set(METRIC_NAMES) - METRICS_OF_OTHER_MAPS
    assert all(math.isfinite(v) for v in m.values())
    # threes are not fives: the judge says so, and the Frechet distance is far above its floor
    assert m["target_accuracy"] <= 0.1 and m["worst_color_accuracy"] <= 0.1
    assert m["fid"] > 5 * m["fid_floor"] and m["w2_to_target"] > 0
    expected = float((judge.predict(data.x_test) == 5).double().mean())
    assert m["target_accuracy"] == pytest.approx(expected)


def test_real_target_as_outputs(data, judge):
    n = len(data.x_test)
    assert len(data.y_test) == n
    # one batch, so the "map" can hand back the real target test samples in order
    m = evaluate(lambda x: data.y_test[: len(x)], data, judge, batch_size=n)
    on_targets = float((judge.predict(data.y_test) == 5).double().mean())
    assert m["target_accuracy"] == pytest.approx(on_targets) and on_targets >= 0.7
    assert m["fid"] == pytest.approx(0.0, abs=1e-6)  # Frechet of a feature set with itself
    assert m["w2_to_target"] == pytest.approx(0.0, abs=1e-9)  # W2 between identical sets
    assert m["fid_floor"] > 0
    refs = reference_rows(data, judge)
    assert refs["real target"] == pytest.approx(m, nan_ok=True)
    assert refs["identity"]["transport_cost"] == 0.0


def test_fives_score_as_fives_and_other_digits_do_not(data, judge):
    """Training fives (unseen by the metric's test set) as outputs: high target accuracy and a
    fid near the floor; every other digit: no target hits and a fid far above it."""
    n = len(data.x_test)
    fives = evaluate(lambda x: other_digit(5, n)[: len(x)], data, judge, batch_size=n)
    assert fives["target_accuracy"] >= 0.7 and fives["fid"] < 2 * fives["fid_floor"]
    for d in (0, 3, 6, 8):
        m = evaluate(lambda x, d=d: other_digit(d, n)[: len(x)], data, judge, batch_size=n)
        assert m["target_accuracy"] <= 0.1, d
        assert m["fid"] > 5 * m["fid_floor"] > 5 * 0, d


def test_a_map_that_works_for_two_colors_only(data, judge):
    """Fives for red and yellow inputs, the input itself for green and blue ones: the overall
    accuracy still looks half right, the worst color shows the failure."""
    colors = data.labels["x_test_color"]
    n = len(data.x_test)
    fives = recolor(other_digit(5, n), colors)

    def half_map(x):
        keep = (colors[: len(x)] >= 2).view(-1, 1, 1, 1, 1)
        return torch.where(keep, x, fives[: len(x)])

    m = evaluate(half_map, data, judge, batch_size=n)
    assert 0.2 <= m["target_accuracy"] <= 0.8
    assert m["worst_color_accuracy"] == 0.0
    assert m["color_preservation"] == 1.0 and m["color_purity"] == pytest.approx(1.0)


def test_color_purity_sees_speckles_the_dominant_color_misses(data):
    """Every input keeps its color in a random 70% of voxels and takes the next palette color in
    the rest: the mean color (color_preservation) is still the input's, the voxels are not."""
    colors = data.labels["x_test_color"]
    g = torch.Generator().manual_seed(0)
    speckled_x = recolor(data.x_test, (colors + 1) % 4)
    mask = torch.rand(data.x_test[:, :1].shape, generator=g) < 0.3
    speckled = torch.where(mask, speckled_x, data.x_test)
    m = evaluate(lambda x: speckled[: len(x)], data, batch_size=len(speckled))
    assert m["color_preservation"] == 1.0
    assert 0.6 < m["color_purity"] < 0.8
    recolored = evaluate(lambda x: speckled_x[: len(x)], data, batch_size=len(speckled))
    assert recolored["color_preservation"] == 0.0 and recolored["color_purity"] == 0.0


def test_diverged_map_gives_nan_not_crash(data, judge):
    m = evaluate(lambda x: x * float("nan"), data, judge, stochastic=True)
    for k in (
        "transport_cost",
        "color_preservation",
        "color_purity",
        "target_accuracy",
        "worst_color_accuracy",
        "fid",
        "w2_to_target",
    ):
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
    judged = {"target_accuracy", "worst_color_accuracy", "fid", "fid_floor"}
    m = evaluate(lambda x: x, data, None)
    assert not judged & set(m)
    no_target = dataclasses.replace(data, spec=SimpleNamespace(target=None, raw="x"))
    m = evaluate(lambda x: x, no_target, judge)
    assert not judged & set(m)
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


def test_generated_digits_are_judged_against_their_own_color():
    """A latent source has no color: purity takes each output's own dominant color, so real
    fives score 1 and fives whose back half is drawn in another hue score less."""
    noise = load_pair("noise-5:2", DATA, seed=0)
    y = noise.y_test
    assert score_outputs(noise.x_test, y, noise)["color_purity"] == 1.0
    lit = y.amax(dim=1, keepdim=True) > 0.0
    other = y[:, [1, 2, 0]]  # the channels rolled: every rgby hue becomes another
    back = torch.arange(y.shape[2]).view(1, 1, -1, 1, 1) >= y.shape[2] // 2
    mixed = torch.where(lit & back, other, y)
    purity = score_outputs(noise.x_test, mixed, noise)["color_purity"]
    assert 0.2 < purity < 0.9


def test_lit_share_sees_a_hazy_map(data, judge):
    """A faint haze over the background keeps digit and color but lights the whole grid."""
    clean = evaluate(lambda x: x.clone(), data, judge)
    hazy = evaluate(lambda x: torch.maximum(x, torch.full_like(x, -0.7)), data, judge)
    assert clean["lit_share"] < 0.5 and hazy["lit_share"] == 1.0
    assert hazy["color_preservation"] == clean["color_preservation"]
    assert hazy["color_purity"] == 1.0  # 0.15 is not above the lit threshold: not counted
    foggy = evaluate(lambda x: torch.maximum(x, torch.full_like(x, -0.4)), data, judge)
    assert foggy["color_purity"] < 0.5  # a lit gray fog (0.3) is no digit's color
    blue = torch.tensor([-0.5, -0.5, -0.2]).view(1, 3, 1, 1, 1)
    tinted = evaluate(lambda x: torch.maximum(x, blue.expand_as(x)), data, judge)
    assert tinted["color_preservation"] < 1.0 and tinted["color_purity"] < 0.5


def test_a_weak_judge_is_named_with_the_digits_it_confuses():
    """Below 0.90 the warning says where the errors are (a rotation makes sixes and nines one
    shape); a judge at 0.95 gets no warning."""
    counts = [[10 if t == p else 0 for p in range(10)] for t in range(10)]
    counts[6][6], counts[6][9] = 5, 5
    info = {"key": "k", "test_accuracy": 0.84, "test_confusion": counts, "data": {"rotation": "z"}}
    net = Classifier3D(3, base=4, feature_dim=8)
    (warning,) = quality_warnings({}, Judge(net, info, torch.device("cpu")))
    assert "0.84" in warning and "6 0.50 (9)" in warning and "unreliable" in warning
    assert (
        quality_warnings({}, Judge(net, {**info, "test_accuracy": 0.95}, torch.device("cpu"))) == []
    )
