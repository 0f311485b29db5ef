"""Pairs (P, Q) whose optimal map T* is KNOWN, so a solver's map can be scored exactly (L2-UVP).

- `w2_mix3_pair`: the "Mix3toMix10" pairs of the continuous W2 benchmark (Korotin et al. 2021),
  built exactly as /work/shared/data/w2bench-mix3tomix10/README.md describes.
- `gaussian_pair`: Gaussians with the closed-form linear map.
- `linear_bures_map`: the [L] baseline, the Gaussian map between the empirical moments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from otzoo.errors import DataError
from otzoo.nets.icnn import DenseICNN, potential_gradient

MOMENT_SAMPLES = 2**14  # the README's sample count for the standardisation and Var(Q)
_STANDARDISE_SEED = 0  # generator seeds of those two fixed estimates
_VAR_Q_SEED = 1
_CHUNK = 8192  # rows per gradient evaluation, to bound memory on large n


class Mix3Sampler:
    """The benchmark's input P: a standardised mixture of 3 Gaussians in R^dim.

    Centers and maps come from the legacy NumPy stream seeded with 0 in the README's order
    (`choice` per coordinate, then `normal`); a private `RandomState(0)` draws the same numbers as
    `numpy.random.seed(0)` without touching global state. The README's `torch.manual_seed(0)`
    only fed the original sampling stream, which is replaced here by explicit generators.
    """

    def __init__(self, dim: int, num: int = 3, dist: float = 1.0, std: float = 0.4, seed: int = 0):
        if dim < 1:
            raise DataError(f"Mix3Sampler dim must be >= 1, got {dim}")
        rng = np.random.RandomState(seed)
        centers = np.zeros((num, dim), dtype=np.float32)
        for d in range(dim):
            idx = rng.choice(list(range(num)), num, replace=False)
            centers[:, d] += dist * idx
        centers -= dist * (num - 1) / 2
        maps = rng.normal(size=(num, dim, dim)).astype(np.float32)
        maps /= np.sqrt((maps**2).sum(axis=2, keepdims=True))
        mult = np.sqrt((centers**2).sum(axis=1).mean() + dim * std**2) / np.sqrt(dim)
        centers /= mult
        maps /= mult
        self.dim, self.num, self.std = dim, num, std
        self.centers = torch.tensor(centers, dtype=torch.float32)
        self.maps = torch.tensor(maps, dtype=torch.float32)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n samples [n, dim]: component k uniform, x = maps[k] @ z * std + centers[k]."""
        k = torch.randint(0, self.num, (n,), generator=generator)
        z = torch.randn(n, self.dim, generator=generator)
        per_component = torch.einsum("kij,nj->kni", self.maps, z)  # [num, n, dim]
        x = per_component[k, torch.arange(n)] * self.std
        return x + self.centers[k]


@dataclass
class KnownMapPair:
    """A source P (sampler), its optimal map T* and Var(Q) for Q = T*#P."""

    name: str
    dim: int
    sample_x: Callable[[int, torch.Generator | None], Tensor]
    true_map: Callable[[Tensor], Tensor]
    var_q: float  # sum of per-coordinate variances of Q
    # Exact moments when known (Gaussian pairs): mean_p, cov_p, mean_q, cov_q in float64.
    moments: dict[str, Tensor] | None = None

    def sample_y(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n samples of Q = T*(x), x ~ P."""
        return self.true_map(self.sample_x(n, generator))


def _load_potential(path: Path, dim: int) -> DenseICNN:
    """A frozen DenseICNN from one benchmark file, with one-line errors naming the file."""
    if not path.is_file():
        raise DataError(
            f"{path}: W2 benchmark weights file not found; `--weights DIR` must point at the "
            f"benchmark folder holding {dim}_v1.pt and {dim}_v2.pt (w2bench-mix3tomix10)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(
            f"{path}: not a readable torch state_dict ({type(err).__name__}); "
            "pass the W2 benchmark file unchanged"
        ) from err
    net = DenseICNN(dim, strong_convexity=1e-2)
    expected = net.state_dict()
    if not isinstance(state, dict) or set(state) != set(expected):
        raise DataError(
            f"{path}: parameter names do not match the dim-{dim} benchmark DenseICNN; "
            f"pass the {dim}_v1.pt / {dim}_v2.pt files of the W2 benchmark"
        )
    for key, want in expected.items():
        got = state[key]
        if not isinstance(got, Tensor) or got.shape != want.shape:
            shape = list(got.shape) if isinstance(got, Tensor) else type(got).__name__
            raise DataError(
                f"{path}: {key} has shape {shape}, expected {list(want.shape)} for dim {dim}; "
                "the file belongs to another dim or model"
            )
    net.load_state_dict(state, strict=True)
    net.requires_grad_(False)
    return net.eval()


class _SumPotential(torch.nn.Module):
    """psi = D1 + D2."""

    def __init__(self, d1: torch.nn.Module, d2: torch.nn.Module):
        super().__init__()
        self.d1, self.d2 = d1, d2

    def forward(self, x: Tensor) -> Tensor:
        return self.d1(x) + self.d2(x)


def _chunked_gradient(f: torch.nn.Module, x: Tensor) -> Tensor:
    x = x.to(torch.float32)
    return torch.cat([potential_gradient(f, part) for part in x.split(_CHUNK)])


def w2_mix3_pair(dim: int, weights_dir: str | Path) -> KnownMapPair:
    """The Mix3toMix10 pair in R^dim: P = Mix3Sampler, T* = standardised grad(D1 + D2)."""
    weights_dir = Path(weights_dir)
    psi = _SumPotential(
        _load_potential(weights_dir / f"{dim}_v1.pt", dim),
        _load_potential(weights_dir / f"{dim}_v2.pt", dim),
    )
    sampler = Mix3Sampler(dim)
    gen = torch.Generator().manual_seed(_STANDARDISE_SEED)
    y = _chunked_gradient(psi, sampler.sample(MOMENT_SAMPLES, gen)).double()
    mean = y.mean(dim=0)
    scale = ((y - mean) ** 2).mean(dim=0).mean().sqrt()
    mean32, scale32 = mean.float(), scale.float()

    def true_map(x: Tensor) -> Tensor:
        return (_chunked_gradient(psi, x) - mean32) / scale32

    gen = torch.Generator().manual_seed(_VAR_Q_SEED)
    y_fresh = true_map(sampler.sample(MOMENT_SAMPLES, gen)).double()
    var_q = float(y_fresh.var(dim=0, unbiased=False).sum())
    return KnownMapPair(f"w2:{dim}", dim, sampler.sample, true_map, var_q)


def _sym_sqrt(s: Tensor, inverse: bool = False) -> Tensor:
    """Square root (or inverse square root) of a symmetric PSD matrix by eigendecomposition."""
    vals, vecs = torch.linalg.eigh((s + s.T) / 2)
    vals = vals.clamp(min=0.0).sqrt()
    if inverse:
        vals = 1.0 / vals
    return (vecs * vals) @ vecs.T


def _bures_matrix(cov1: Tensor, cov2: Tensor) -> Tensor:
    """A = S1^-1/2 (S1^1/2 S2 S1^1/2)^1/2 S1^-1/2, the OT map's linear part N(., S1) -> N(., S2)."""
    root1 = _sym_sqrt(cov1)
    inv_root1 = _sym_sqrt(cov1, inverse=True)
    a = inv_root1 @ _sym_sqrt(root1 @ cov2 @ root1) @ inv_root1
    return (a + a.T) / 2


def _affine_map(a: Tensor, m1: Tensor, m2: Tensor) -> Callable[[Tensor], Tensor]:
    """x -> A (x - m1) + m2, computed in float64, returned in x's dtype."""

    def apply(x: Tensor) -> Tensor:
        return ((x.double() - m1) @ a.T + m2).to(x.dtype)

    return apply


def gaussian_pair(dim: int, seed: int = 0) -> KnownMapPair:
    """N(m1, S1) -> N(m2, S2) with seeded random means and well-conditioned SPD covariances."""
    if dim < 1:
        raise DataError(f"gaussian pair dim must be >= 1, got {dim}")
    gen = torch.Generator().manual_seed(seed)

    def random_spd() -> Tensor:
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
        eig = 0.25 + 1.75 * torch.rand(dim, generator=gen, dtype=torch.float64)  # in [0.25, 2]
        return (q * eig) @ q.T

    m1 = torch.randn(dim, generator=gen, dtype=torch.float64)
    m2 = torch.randn(dim, generator=gen, dtype=torch.float64)
    cov1, cov2 = random_spd(), random_spd()
    root1 = _sym_sqrt(cov1)

    def sample_x(n: int, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(n, dim, generator=generator, dtype=torch.float64)
        return (z @ root1 + m1).float()

    true_map = _affine_map(_bures_matrix(cov1, cov2), m1, m2)
    moments = {"mean_p": m1, "cov_p": cov1, "mean_q": m2, "cov_q": cov2}
    var_q = float(torch.trace(cov2))
    return KnownMapPair(f"gaussian:{dim}", dim, sample_x, true_map, var_q, moments)


def linear_bures_map(x_samples: Tensor, y_samples: Tensor) -> Callable[[Tensor], Tensor]:
    """The [L] baseline: the Gaussian (Bures) OT map between the empirical moments of P and Q.

    Costs O(dim^3) in float64 (covariance square roots): meant for vectors and tiny grids.
    """
    x = x_samples.detach().flatten(1).double().cpu()
    y = y_samples.detach().flatten(1).double().cpu()
    if x.shape[1] != y.shape[1]:
        raise DataError(
            f"linear_bures_map needs equal dimensions, got {x.shape[1]} and {y.shape[1]}; "
            "pass samples of P and Q of the same size"
        )
    dim = x.shape[1]
    if len(x) <= dim:
        raise DataError(
            f"linear_bures_map needs more than dim={dim} samples of P to invert their covariance, "
            f"got {len(x)}; pass more samples"
        )
    cov1, cov2 = torch.cov(x.T).reshape(dim, dim), torch.cov(y.T).reshape(dim, dim)
    if torch.linalg.eigvalsh(cov1).min() <= 1e-12 * max(float(cov1.trace()), 1e-300):
        raise DataError(
            "linear_bures_map: the samples of P have a singular covariance; pass "
            "non-degenerate samples"
        )
    a = _bures_matrix(cov1, cov2)
    affine = _affine_map(a, x.mean(dim=0), y.mean(dim=0))

    def apply(points: Tensor) -> Tensor:
        return affine(points.flatten(1).cpu()).reshape(points.shape).to(points.device)

    return apply


# Published forward L2-UVP (%) on Mix3toMix10, from the benchmark's README (Korotin et al. 2021;
# the amortized rows: Amos 2023). [MM:R] diverged at 128: no entry there.
PUBLISHED: dict[str, dict[int, float]] = {
    "[MM] minimax ICNN": {2: 0.1, 4: 0.3, 8: 0.9, 16: 2.2, 32: 4.2, 64: 3.2, 128: 3.1},
    "[MM:R] reversed minimax (NOT/OTM form)": {2: 0.1, 4: 0.3, 8: 0.7, 16: 1.9, 32: 2.8, 64: 4.5},
    "[W2] W2GN": {2: 0.1, 4: 0.7, 8: 2.6, 16: 3.3, 32: 6.0, 64: 7.2, 128: 2.0},
    "[MMv1] per-batch conjugate": {2: 0.2, 4: 1.0, 8: 1.8, 16: 1.4, 32: 6.9, 64: 8.1, 128: 2.2},
    "[AC:MLP] amortized conjugate, MLP potential (Amos 2023)": {
        **{2: 0.03, 4: 0.22, 8: 0.60, 16: 0.80, 32: 2.09, 64: 2.08, 128: 0.67}
    },
    "[AC:ICNN] amortized conjugate, ICNN potential (Amos 2023)": {
        **{2: 0.26, 4: 0.79, 8: 1.63, 16: 1.12, 32: 1.92, 64: 4.40, 128: 1.64}
    },
    "[LS] large-scale entropic": {
        2: 5.0,
        4: 11.6,
        8: 21.5,
        16: 31.7,
        32: 42.1,
        64: 40.1,
        128: 46.8,
    },
    "[L] linear Bures map": {2: 14.1, 4: 14.9, 8: 27.3, 16: 41.6, 32: 55.3, 64: 63.9, 128: 63.6},
    "[ID] identity": {2: 32.7, 4: 42.0, 8: 58.6, 16: 87.0, 32: 121.0, 64: 137.0, 128: 145.0},
}
PUBLISHED_DIMS = (2, 4, 8, 16, 32, 64, 128)
BEST_PUBLISHED = {d: min(r[d] for r in PUBLISHED.values() if d in r) for d in PUBLISHED_DIMS}
