"""L2-UVP and cosine on hand-made cases with known answers, and evaluate_map end to end."""

from __future__ import annotations

import pytest
import torch

from otzoo.data.benchmarks import gaussian_pair
from otzoo.metrics.uvp import cosine_metric, evaluate_map, l2_uvp


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_l2_uvp_constant_offset():
    true = _randn(100, 3)
    pred = true + torch.tensor([1.0, 2.0, 2.0])  # ||offset||^2 = 9 for every sample
    assert l2_uvp(pred, true, var_q=4.5) == pytest.approx(200.0)
    assert l2_uvp(true, true, var_q=1.0) == 0.0


def test_l2_uvp_sums_over_voxels():
    true = _randn(4, 2, 3, 3, 3)
    pred = true + 0.5  # 54 elements * 0.25 per sample
    assert l2_uvp(pred, true, var_q=13.5) == pytest.approx(100.0)


def test_cosine_known_cases():
    x = _randn(50, 4, seed=1)
    true = x + _randn(50, 4, seed=2)
    assert cosine_metric(x, x + 3 * (true - x), true) == pytest.approx(1.0)
    assert cosine_metric(x, x - (true - x), true) == pytest.approx(-1.0)
    assert cosine_metric(x, x, true) == 0.0  # identity: no displacement, defined as 0


def test_cosine_hand_computed():
    x = torch.zeros(2, 2)
    true = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pred = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    # E<p, t> = (1 + 1)/2 = 1; E||p||^2 = (2 + 1)/2 = 1.5; E||t||^2 = 1.
    assert cosine_metric(x, pred, true) == pytest.approx(1 / 1.5**0.5)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shapes differ"):
        l2_uvp(torch.zeros(3, 2), torch.zeros(3, 3), 1.0)
    with pytest.raises(ValueError, match="shapes differ"):
        cosine_metric(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(2, 2))


def test_evaluate_map_on_gaussian_pair():
    pair = gaussian_pair(3, seed=0)
    exact = evaluate_map(pair, pair.true_map, n=5000)  # n not a multiple of the chunk size
    assert exact == {"l2_uvp": pytest.approx(0.0, abs=1e-10), "cosine": pytest.approx(1.0)}

    ident = evaluate_map(pair, lambda x: x, n=5000, seed=4)
    x = pair.sample_x(5000, torch.Generator().manual_seed(4))
    direct = 100 * ((pair.true_map(x) - x) ** 2).sum(1).mean().item() / pair.var_q
    assert ident["l2_uvp"] == pytest.approx(direct, rel=1e-5)
    assert ident == evaluate_map(pair, lambda x: x, n=5000, seed=4)  # deterministic per seed
    assert ident["l2_uvp"] != evaluate_map(pair, lambda x: x, n=5000, seed=5)["l2_uvp"]
