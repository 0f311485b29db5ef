"""Metric functions against known answers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

import otzoo.data.transforms as transforms
from otzoo.metrics import (
    batched_apply,
    color_preservation,
    color_purity,
    diversity,
    energy_distance,
    frechet_distance,
    lit_share,
    transport_cost,
    w2_to_target,
    worst_color_accuracy,
)


def _with_exact_moments(n: int, mean: np.ndarray, std: np.ndarray, seed: int) -> np.ndarray:
    """n samples whose sample mean is `mean` and sample covariance exactly diag(std^2)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # cov(z) = I
    return mean + z * std


# ----------------------------------------------------------------------------- transport cost


def test_transport_cost_zero_for_identity_and_hand_computed():
    x = torch.randn(2, 4)
    assert transport_cost(x, x) == 0.0
    assert transport_cost(x, x + 0.5) == pytest.approx(0.25)
    tx = x.clone()
    tx[0] += 0.5  # ||.||^2 / D = 4 * 0.25 / 4 = 0.25
    tx[1, 2] += 2.0  # ||.||^2 / D = 4 / 4 = 1
    assert transport_cost(x, tx) == pytest.approx((0.25 + 1.0) / 2)


def test_transport_cost_voxels_and_shape_mismatch():
    x = -torch.ones(3, 3, 4, 4, 4)
    assert transport_cost(x, x + 2.0) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="differ"):
        transport_cost(x, x[:2])


# ----------------------------------------------------------------------------- Frechet


def test_frechet_of_a_set_with_itself_is_zero():
    a = np.random.default_rng(0).standard_normal((200, 8)) * 3.0 + 1.0
    scale = np.trace(np.cov(a, rowvar=False))
    assert frechet_distance(a, a) <= 1e-6 * scale


@pytest.mark.parametrize(("n", "f"), [(500, 3), (20, 40)])  # f < n (covariance) and n < f
def test_frechet_matches_closed_form_for_diagonal_gaussians(n, f):
    mu_a, mu_b = np.zeros(f), np.zeros(f)
    mu_a[:3], mu_b[:3] = [1.0, -2.0, 0.5], [0.0, 1.0, 0.5]
    sd_a, sd_b = np.zeros(f), np.zeros(f)
    sd_a[:3], sd_b[:3] = [1.0, 2.0, 0.5], [3.0, 1.0, 0.5]
    a = np.zeros((n, f))
    b = np.zeros((n, f))
    a[:, :3] = _with_exact_moments(n, mu_a[:3], sd_a[:3], seed=1)
    b[:, :3] = _with_exact_moments(n, mu_b[:3], sd_b[:3], seed=2)
    # diagonal covariances: Tr(Sa + Sb - 2 (Sa Sb)^1/2) = sum (sd_a - sd_b)^2
    expected = ((mu_a - mu_b) ** 2).sum() + ((sd_a - sd_b) ** 2).sum()  # = 10 + 5 = 15
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(torch.from_numpy(a).float(), torch.from_numpy(b).float()) == (
        pytest.approx(expected, rel=1e-5)
    )


def test_frechet_matches_sqrtm_formula_for_correlated_features_and_is_symmetric():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((300, 5)) @ rng.standard_normal((5, 5))
    b = rng.standard_normal((250, 5)) @ rng.standard_normal((5, 5)) + 0.3
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(sa @ sb).real
    diff = a.mean(0) - b.mean(0)
    expected = diff @ diff + np.trace(sa + sb - 2.0 * covmean)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(b, a) == pytest.approx(frechet_distance(a, b), rel=1e-10)


def test_frechet_is_robust_on_rank_deficient_features():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((10, 64))
    b = rng.standard_normal((12, 64)) * 2.0
    ab, ba = frechet_distance(a, b), frechet_distance(b, a)
    assert np.isfinite(ab) and ab > 0.0
    assert ab == pytest.approx(ba, rel=1e-10)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvals(sa @ sb).real, 0.0, None)).sum()
    diff = a.mean(0) - b.mean(0)
    expected = diff @ diff + np.trace(sa) + np.trace(sb) - 2.0 * tr_sqrt
    assert ab == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a) <= 1e-9 * np.trace(sa)  # never negative, never NaN


def test_frechet_bad_input():
    a = np.zeros((5, 3))
    with pytest.raises(ValueError, match="feature sizes"):
        frechet_distance(a, np.zeros((5, 4)))
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(a, np.zeros((1, 3)))
    a[0, 0] = np.nan
    assert np.isnan(frechet_distance(a, np.ones((5, 3))))


# ----------------------------------------------------------------------------- W2 to target


def test_w2_to_target_zero_for_identical_sets_and_shift_for_translation():
    torch.manual_seed(0)
    a = torch.rand(30, 3, 4, 4, 4) * 2 - 1
    assert w2_to_target(a, a) == pytest.approx(0.0, abs=1e-12)
    shift = torch.randn(1, 3, 4, 4, 4)
    expected = float(shift.double().pow(2).sum()) / shift.numel()
    # a translation is the optimal map under the squared cost, whatever the order of the set
    assert w2_to_target(a, a[torch.randperm(30)] + shift) == pytest.approx(expected, rel=1e-9)


def test_w2_to_target_uneven_sets_and_subsampling():
    out = torch.tensor([[0.0], [2.0]])
    target = torch.tensor([[1.0]])
    assert w2_to_target(out, target) == pytest.approx(1.0)  # both halves move 1
    far = torch.cat([target, torch.full((5, 1), 100.0)])
    assert w2_to_target(out, far, max_samples=1) == pytest.approx(1.0)  # first one only
    with pytest.raises(ValueError, match="sample shapes"):
        w2_to_target(out, torch.zeros(2, 2))
    assert np.isnan(w2_to_target(torch.tensor([[float("nan")]]), target))


# ----------------------------------------------------------------------------- energy distance


def test_energy_distance_known_values_and_zero_for_one_law():
    # 2 E|A-B| - E|A-A'| - E|B-B'| with A = {0, 2}, B = {1}: 2 * 1 - 1 - 0
    assert energy_distance(torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0]])) == 1.0
    # one point each, c apart in every one of D = 8 elements: 2 c sqrt(D) / sqrt(D)
    assert energy_distance(torch.zeros(1, 2, 2, 2), torch.full((1, 2, 2, 2), 0.5)) == 1.0
    torch.manual_seed(0)
    a = torch.rand(40, 3, 4, 4, 4)
    # the same set in another order: zero up to float64 rounding of cdist's matrix-product form
    # (-4e-12 seen in a full parallel run); two different sets below are ~0.1 apart
    assert energy_distance(a, a[torch.randperm(40)]) == pytest.approx(0.0, abs=1e-9)
    near, far = (energy_distance(a, a + s) for s in (0.1, 0.3))
    assert 0 < near < far  # grows with the gap between the laws


def test_energy_distance_refuses_mismatched_sets_and_reports_nan():
    with pytest.raises(ValueError, match="one sample shape"):
        energy_distance(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="non-empty"):
        energy_distance(torch.zeros(0, 3), torch.zeros(2, 3))
    assert np.isnan(energy_distance(torch.tensor([[float("inf")]]), torch.zeros(1, 1)))


# ----------------------------------------------------------------------------- diversity


def test_diversity_zero_for_deterministic_and_known_variance():
    x = torch.randn(4, 1, 3, 2, 2, 2)
    assert diversity(x.expand(4, 5, 3, 2, 2, 2)) == 0.0
    two = torch.cat([x - 1.0, x + 1.0], dim=1)  # per element: two values 2 apart
    assert diversity(two) == pytest.approx(2.0)  # unbiased variance over Z = 2
    torch.manual_seed(0)
    noisy = x + 0.5 * torch.randn(4, 4000, 3, 2, 2, 2)
    assert diversity(noisy) == pytest.approx(0.25, rel=0.03)
    with pytest.raises(ValueError, match="Z >= 2"):
        diversity(x)


# ----------------------------------------------------------------------------- colour


def test_color_preservation_counts_matches(monkeypatch):
    calls = []

    def fake_dominant_color(x, palette):
        calls.append(palette)
        return x[:, 0, 0, 0, 0].round().long()

    import otzoo.metrics.basic as basic

    monkeypatch.setattr(basic, "dominant_color", fake_dominant_color)
    tx = torch.zeros(5, 1, 2, 2, 2)
    tx[:, 0, 0, 0, 0] = torch.tensor([0.0, 1.0, 2.0, 3.0, -1.0])
    labels = torch.tensor([0, 1, 0, 3, 2])
    palette = torch.eye(3)
    assert color_preservation(tx, labels, palette) == pytest.approx(3 / 5)
    assert calls and calls[0] is palette
    with pytest.raises(ValueError, match="colour labels"):
        color_preservation(tx, labels[:3], palette)


def test_color_preservation_with_real_rgby_volumes():
    palette = transforms.palette("rgby")
    v = torch.zeros(4, 8, 8, 8)
    v[:, 2:6, 2:6, 2:6] = 0.5
    occupancy = transforms.RGBY_OCCUPANCY[:, :, None, None, None]  # red, yellow, green, blue
    lit = (v > 0).float()[:, None]
    vols = (occupancy * lit + (1 - occupancy) * v[:, None]) * 2 - 1
    assert color_preservation(vols, torch.tensor([0, 1, 2, 3]), palette) == 1.0
    assert color_preservation(vols, torch.tensor([0, 1, 3, 2]), palette) == 0.5


# ----------------------------------------------------------------------------- batched_apply


def test_batched_apply_matches_one_pass_without_grad():
    net = torch.nn.Linear(3, 2)
    x = torch.randn(10, 3)
    sizes = []

    def fn(xb):
        sizes.append(len(xb))
        return net(xb)

    out = batched_apply(fn, x, batch_size=4, device="cpu")
    assert sizes == [4, 4, 2]
    assert not out.requires_grad
    assert out.device == x.device
    torch.testing.assert_close(out, net(x).detach())


def test_batched_apply_bad_input():
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match="batch_size"):
        batched_apply(lambda t: t, x, batch_size=0)
    with pytest.raises(TypeError, match="not a tensor"):
        batched_apply(lambda t: t.numpy(), x)


def test_lit_share_counts_voxels_above_the_haze_threshold():
    x = -torch.ones(2, 3, 4, 4, 4)  # black: nothing lit
    assert lit_share(x) == 0.0
    x[0, 1, 0, 0, 0] = 1.0  # one voxel of one sample, lit in one channel
    assert lit_share(x) == pytest.approx(1 / (2 * 64))
    haze = -torch.ones(1, 3, 4, 4, 4) + 0.3  # brightness 0.15 everywhere: all lit
    assert lit_share(haze) == 1.0
    assert lit_share(haze - 0.2) == 0.0  # brightness 0.05: below 0.1
    with pytest.raises(ValueError, match="voxels"):
        lit_share(torch.zeros(4, 3))


# ----------------------------------------------------------------------------- per-color metrics


def _voxels(colors: list[list[tuple[float, float, float]]]) -> torch.Tensor:
    """[N, 3, 1, 1, K]: sample i holds the K voxel colors colors[i] (in [0, 1])."""
    t = torch.tensor(colors, dtype=torch.float32)  # [N, K, 3]
    return (t.permute(0, 2, 1)[:, :, None, None, :] * 2 - 1).contiguous()


def test_color_purity_counts_lit_voxels_of_the_input_color():
    pal = transforms.palette("rgby")  # red, yellow, green, blue at V = 0.5
    red, blue, white, dark = (1, 0.4, 0.4), (0.3, 0.3, 1), (1, 1, 1), (0.05, 0.0, 0.0)
    gray = (0.4, 0.4, 0.4)  # dim and achromatic: in no real digit
    x = _voxels(
        [
            [red, red, red, blue],  # 3 of 4 lit voxels red
            [red, white, white, dark],  # white counts as right (rgby stroke centres), dark is unlit
            [white, dark, dark, dark],  # no hued voxel at all: scores 0
            [red, red, gray, gray],  # a stroke drawn without color: the gray half is wrong
        ]
    )
    labels = torch.tensor([0, 0, 0, 0])
    assert color_purity(x, labels, pal) == pytest.approx((0.75 + 1.0 + 0.0 + 0.5) / 4)
    blue_labels = torch.tensor([3, 3, 3, 3])
    assert color_purity(x, blue_labels, pal) == pytest.approx((0.25 + 2 / 3 + 0.0 + 0.0) / 4)
    with pytest.raises(ValueError, match="color labels"):
        color_purity(x, labels[:2], pal)


def test_worst_color_accuracy_is_the_minimum_over_present_colors():
    hits = torch.tensor([True, True, False, True, False, False])
    colors = torch.tensor([0, 0, 1, 1, 3, 3])  # color 2 absent
    assert worst_color_accuracy(hits, colors) == 0.0
    assert worst_color_accuracy(hits[:4], colors[:4]) == 0.5
    assert worst_color_accuracy(torch.ones(4, dtype=torch.bool), colors[:4]) == 1.0
    with pytest.raises(ValueError):
        worst_color_accuracy(hits, colors[:3])
