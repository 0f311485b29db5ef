"""Known-map pairs: W2 benchmark files load strictly, the baselines reproduce the published
identity / linear L2-UVP, Gaussian pairs have the right closed form, errors name the file."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm

from otzoo.data.benchmarks import (
    KnownMapPair,
    Mix3Sampler,
    gaussian_pair,
    linear_bures_map,
    w2_mix3_pair,
)
from otzoo.errors import DataError
from otzoo.metrics.uvp import evaluate_map
from otzoo.nets.icnn import DenseICNN
from tests.conftest import w2_dir, w2_required

W2_DIR = w2_dir()
DIMS = (2, 4, 8, 16, 32)
FILES = [f"{d}_{v}{c}.pt" for d in DIMS for v in ("v1", "v2") for c in ("", "_conj")]
# Published figures (README of the benchmark folder): identity and linear L2-UVP, 2**14 samples.
PUBLISHED_ID = {2: 32.7, 4: 42.0, 8: 58.6, 16: 87.0, 32: 121.0}
PUBLISHED_L = {2: 14.1, 4: 14.9, 8: 27.3, 16: 41.6, 32: 55.3}

needs_w2 = w2_required(DIMS)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- Mix3Sampler -------------------------------------------------------------------------------


def test_mix3_sampler_follows_readme_random_calls():
    """Same centers/maps as the README's global-seeded recipe (global state restored after)."""
    dim = 5
    saved = np.random.get_state()
    try:
        np.random.seed(0)
        centers = np.zeros((3, dim), dtype=np.float32)
        for d in range(dim):
            centers[:, d] += 1 * np.random.choice(list(range(3)), 3, replace=False)
        centers -= 1 * (3 - 1) / 2
        maps = np.random.normal(size=(3, dim, dim)).astype(np.float32)
    finally:
        np.random.set_state(saved)
    maps /= np.sqrt((maps**2).sum(axis=2, keepdims=True))
    mult = np.sqrt((centers**2).sum(axis=1).mean() + dim * 0.4**2) / np.sqrt(dim)
    sampler = Mix3Sampler(dim)
    np.testing.assert_allclose(sampler.centers.numpy(), centers / mult, rtol=1e-6)
    np.testing.assert_allclose(sampler.maps.numpy(), maps / mult, rtol=1e-6)


def test_mix3_sampler_moments_and_reproducibility():
    dim = 8
    sampler = Mix3Sampler(dim)
    x = sampler.sample(2**15, _gen(0))
    assert x.shape == (2**15, dim) and x.dtype == torch.float32
    # Standardised: centers sum to zero per coordinate and E||x||^2 = dim.
    assert x.mean(0).abs().max() < 0.05
    assert (x**2).sum(1).mean().item() == pytest.approx(dim, rel=0.03)
    torch.testing.assert_close(sampler.sample(10, _gen(1)), sampler.sample(10, _gen(1)))
    assert not torch.equal(sampler.sample(10, _gen(1)), sampler.sample(10, _gen(2)))


# -- W2 Mix3toMix10 pairs ----------------------------------------------------------------------


@needs_w2
@pytest.mark.parametrize("name", FILES)
def test_every_benchmark_file_loads_strictly(name):
    path = W2_DIR / name
    dim = int(name.split("_")[0])
    net = DenseICNN(dim)
    net.load_state_dict(torch.load(path, weights_only=True), strict=True)
    out = net(torch.randn(4, dim, generator=_gen(0)))
    assert out.shape == (4,) and torch.isfinite(out).all()
    # The benchmark potentials are convex: their hidden-path weights are already >= 0.
    assert net.convexity_penalty().item() == 0.0


@needs_w2
@pytest.mark.parametrize("dim", DIMS)
def test_w2_baselines_reproduce_published_figures(dim):
    """THE key check: identity and linear maps score as published (within ~3%)."""
    pair = w2_mix3_pair(dim, W2_DIR)
    assert pair.name == f"w2:{dim}" and pair.dim == dim
    assert pair.var_q == pytest.approx(dim, rel=0.03)  # standardised: per-coordinate var 1
    ident = evaluate_map(pair, lambda x: x)
    x_fit, y_fit = pair.sample_x(2**14, _gen(7)), pair.sample_y(2**14, _gen(8))
    linear = evaluate_map(pair, linear_bures_map(x_fit, y_fit))
    assert ident["l2_uvp"] == pytest.approx(PUBLISHED_ID[dim], rel=0.03)
    assert linear["l2_uvp"] == pytest.approx(PUBLISHED_L[dim], rel=0.03)
    assert ident["cosine"] == 0.0
    assert 0.6 < linear["cosine"] < 0.9


@needs_w2
def test_w2_true_map_is_standardised_and_deterministic():
    pair = w2_mix3_pair(4, W2_DIR)
    y = pair.sample_y(2**14, _gen(3))
    assert y.shape == (2**14, 4) and torch.isfinite(y).all()
    assert y.mean(0).abs().max() < 0.05
    assert y.var(0).mean().item() == pytest.approx(1.0, rel=0.03)
    again = w2_mix3_pair(4, W2_DIR)
    x = pair.sample_x(16, _gen(4))
    torch.testing.assert_close(pair.true_map(x), again.true_map(x))


def test_w2_missing_file_names_path_and_flag(tmp_path):
    with pytest.raises(DataError, match="--weights") as err:
        w2_mix3_pair(4, tmp_path)
    assert str(tmp_path / "4_v1.pt") in str(err.value)
    assert "\n" not in str(err.value)


@needs_w2
def test_w2_wrong_shape_or_garbage_file_names_it(tmp_path):
    shutil.copy(W2_DIR / "4_v1.pt", tmp_path / "2_v1.pt")  # a dim-4 file posing as dim 2
    shutil.copy(W2_DIR / "2_v2.pt", tmp_path / "2_v2.pt")
    with pytest.raises(DataError, match="2_v1.pt") as err:
        w2_mix3_pair(2, tmp_path)
    assert "shape" in str(err.value)
    (tmp_path / "2_v1.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="2_v1.pt.*not a readable"):
        w2_mix3_pair(2, tmp_path)
    torch.save({"weight": torch.zeros(2)}, tmp_path / "2_v1.pt")
    with pytest.raises(DataError, match="2_v1.pt.*names"):
        w2_mix3_pair(2, tmp_path)


# -- Gaussian pairs and the linear baseline ----------------------------------------------------


def _scipy_bures(cov1: np.ndarray, cov2: np.ndarray) -> np.ndarray:
    root1 = np.real(sqrtm(cov1))
    inv_root1 = np.linalg.inv(root1)
    return inv_root1 @ np.real(sqrtm(root1 @ cov2 @ root1)) @ inv_root1


def test_gaussian_pair_closed_form_matches_independent_formula():
    pair = gaussian_pair(5, seed=3)
    assert isinstance(pair, KnownMapPair) and pair.name == "gaussian:5"
    m = {k: v.numpy() for k, v in pair.moments.items()}
    a = _scipy_bures(m["cov_p"], m["cov_q"])

    def scipy_map(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy((x.double().numpy() - m["mean_p"]) @ a.T + m["mean_q"]).float()

    scores = evaluate_map(pair, scipy_map, n=4096)
    assert scores["l2_uvp"] < 1e-8
    assert scores["cosine"] == pytest.approx(1.0, abs=1e-6)
    assert pair.var_q == pytest.approx(np.trace(m["cov_q"]))
    assert np.all(np.linalg.eigvalsh(m["cov_p"]) > 0.2)


def test_gaussian_pair_pushes_moments_of_p_to_q():
    pair = gaussian_pair(4, seed=0)
    mom = pair.moments
    x = pair.sample_x(2**16, _gen(1)).double()
    y = pair.sample_y(2**16, _gen(2)).double()
    torch.testing.assert_close(x.mean(0), mom["mean_p"], atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), mom["cov_p"], atol=0.05, rtol=0)
    torch.testing.assert_close(y.mean(0), mom["mean_q"], atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(y.T), mom["cov_q"], atol=0.05, rtol=0)


def test_gaussian_pair_is_seeded():
    a, b, c = gaussian_pair(3, seed=0), gaussian_pair(3, seed=0), gaussian_pair(3, seed=1)
    torch.testing.assert_close(a.moments["cov_q"], b.moments["cov_q"])
    assert not torch.allclose(a.moments["cov_q"], c.moments["cov_q"])


def test_linear_bures_map_on_gaussians_is_close_to_closed_form():
    pair = gaussian_pair(4, seed=2)
    fitted = linear_bures_map(pair.sample_x(2**14, _gen(5)), pair.sample_y(2**14, _gen(6)))
    assert evaluate_map(pair, fitted, n=4096)["l2_uvp"] < 0.5
    assert evaluate_map(pair, lambda x: x, n=4096)["l2_uvp"] > 10  # the pair is not trivial


def test_linear_bures_map_keeps_shape_and_refuses_bad_samples():
    gen = _gen(0)
    x = torch.randn(200, 2, 2, 2, generator=gen)
    y = 3 * torch.randn(200, 2, 2, 2, generator=gen) + 1
    mapped = linear_bures_map(x, y)(x[:7])
    assert mapped.shape == (7, 2, 2, 2) and mapped.dtype == torch.float32
    with pytest.raises(DataError, match="more than dim"):
        linear_bures_map(torch.randn(3, 4), torch.randn(3, 4))
    with pytest.raises(DataError, match="equal dimensions"):
        linear_bures_map(torch.randn(20, 2), torch.randn(20, 3))
    with pytest.raises(DataError, match="singular"):
        linear_bures_map(torch.randn(50, 2) @ torch.ones(2, 3), torch.randn(50, 3))
