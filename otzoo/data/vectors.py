"""Vector pairs with a KNOWN optimal map: `w2:DIM` (the W2 benchmark's Mix3toMix10) and
`gauss:DIM` / `gauss:DIM:S` (Gaussians with the closed-form map, pair parameters seeded by S).

These are `PairData` of kind "vector" (x_shape (dim,)), so every vector-capable solver trains on
them through the usual path (`otzoo train --pair w2:8`). The known map travels with the data:
`VectorPairData.known` holds the `KnownMapPair` (sampler, `true_map`, `var_q`) for exact
scoring, and `extras` holds `x_test_true_map` = T*(x_test) and `var_q` as tensors for code that
only reads tensors.

Training sets are unpaired: x and y are drawn from independent streams, y = T*(x') with x'
never seen as a source. As in the benchmark papers, training batches of these pairs are fresh
samples of P and Q at every draw (`otzoo.batches.for_pair`); the fixed sets (N_TRAIN) serve
solvers that fit once.

The W2 weights folder is taken from an explicit argument (`otzoo bench w2 --weights DIR`),
else from the environment variable OTZOO_W2BENCH_DIR; without either, or with a missing file,
a `w2:` pair is a one-line DataError saying which.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from otzoo.data.benchmarks import KnownMapPair, gaussian_pair, w2_mix3_pair
from otzoo.data.pairs import PAIR_LOADERS, DataConfig, PairData, stream_generator
from otzoo.data.spec import PairSpec, register_pair_kind
from otzoo.errors import DataError

W2_ENV = "OTZOO_W2BENCH_DIR"
W2_DIRNAME = "w2bench-mix3tomix10"
N_TRAIN = 2**16  # fixed training draws per side for the shared trainer (the bench samples anew)
N_TEST = 2**12
MAX_DIM = 4096
_X_TRAIN, _Y_TRAIN, _X_TEST, _Y_TEST = 20, 21, 22, 23  # random streams (24: otzoo.batches)

W2_FORM = "w2:DIM (W2 benchmark Mix3toMix10 in R^DIM, e.g. w2:16)"
GAUSS_FORM = "gauss:DIM or gauss:DIM:S (Gaussians in R^DIM, pair seed S, e.g. gauss:16)"


@dataclass(frozen=True)
class VectorSpec(PairSpec):
    """A known-map vector pair; no digits involved, so `source` / `target` are None."""

    source: int | None = None
    target: int | None = None
    dim: int = 0
    pair_seed: int = 0  # gauss only: seeds the means and covariances (not the samples)


def vector_dim(spec: PairSpec) -> int | None:
    """The dimension of a `w2:` / `gauss:` spec; None for any other pair (e.g. voxels)."""
    return spec.dim if isinstance(spec, VectorSpec) else None


@dataclass
class VectorPairData(PairData):
    """PairData plus the known optimal map of the pair."""

    known: KnownMapPair | None = None


def _check_dim(raw: str, dim: int, form: str) -> None:
    if not 1 <= dim <= MAX_DIM:
        raise DataError(f"pair {raw!r}: dimension must be in 1..{MAX_DIM}; expected {form}")


def _build_w2(m: re.Match[str], raw: str) -> PairSpec:
    dim = int(m.group(1))
    _check_dim(raw, dim, W2_FORM)
    return VectorSpec(raw=raw, kind="w2", dim=dim)


def _build_gauss(m: re.Match[str], raw: str) -> PairSpec:
    dim = int(m.group(1))
    _check_dim(raw, dim, GAUSS_FORM)
    pair_seed = int(m.group(2)) if m.group(2) is not None else 0
    return VectorSpec(raw=raw, kind="gauss", dim=dim, pair_seed=pair_seed)


def default_w2_dir() -> Path | None:
    """Where the W2 benchmark files are when no folder is passed: $OTZOO_W2BENCH_DIR, or None."""
    env = os.environ.get(W2_ENV, "").strip()
    return Path(env) if env else None


def known_map_pair(spec: PairSpec, weights_dir: str | Path | None = None) -> KnownMapPair:
    """The sampler and true map of a `w2:` / `gauss:` spec (cached: the W2 setup costs seconds)."""
    if spec.kind == "w2":
        folder = Path(weights_dir) if weights_dir is not None else default_w2_dir()
        if folder is None:
            raise DataError(
                f"pair {spec.raw!r} needs the W2 benchmark files ({W2_DIRNAME}); set "
                f"{W2_ENV}=DIR to the folder holding {spec.dim}_v1.pt and {spec.dim}_v2.pt"
            )
        return _cached_w2(spec.dim, str(folder.resolve()))
    if spec.kind == "gauss":
        return _cached_gauss(spec.dim, spec.pair_seed)
    raise DataError(f"pair {spec.raw!r} is not a vector pair; expected {W2_FORM} or {GAUSS_FORM}")


@lru_cache(maxsize=8)
def _cached_w2(dim: int, folder: str) -> KnownMapPair:
    return w2_mix3_pair(dim, folder)


@lru_cache(maxsize=8)
def _cached_gauss(dim: int, pair_seed: int) -> KnownMapPair:
    return gaussian_pair(dim, seed=pair_seed)


def load_vector_pair(
    spec: PairSpec,
    seed: int = 0,
    weights_dir: str | Path | None = None,
    n_train: int = N_TRAIN,
    n_test: int = N_TEST,
) -> VectorPairData:
    """Seeded, unpaired train/test draws of P and Q (y = T*(x') with independent x')."""
    if n_train < 1 or n_test < 1:
        raise DataError(f"n_train={n_train}, n_test={n_test}: both must be >= 1")
    known = known_map_pair(spec, weights_dir)
    x_train = known.sample_x(n_train, stream_generator(seed, _X_TRAIN))
    y_train = known.sample_y(n_train, stream_generator(seed, _Y_TRAIN))
    x_test = known.sample_x(n_test, stream_generator(seed, _X_TEST))
    y_test = known.sample_y(n_test, stream_generator(seed, _Y_TEST))
    extras = {
        "x_test_true_map": known.true_map(x_test),
        "var_q": torch.tensor(known.var_q, dtype=torch.float64),
    }
    shape = (known.dim,)
    return VectorPairData(
        spec=spec,
        kind="vector",
        x_shape=shape,
        y_shape=shape,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        labels={},
        palette=None,
        extras=extras,
        known=known,
    )


def _loader(spec: PairSpec, cfg: DataConfig, seed: int) -> PairData:
    """`load_pair` entry: the data config's voxel options do not apply to vector pairs."""
    del cfg
    return load_vector_pair(spec, seed)


register_pair_kind(r"w2:([0-9]+)", _build_w2, W2_FORM)
register_pair_kind(r"gauss:([0-9]+)(?::([0-9]+))?", _build_gauss, GAUSS_FORM)
PAIR_LOADERS["w2"] = _loader
PAIR_LOADERS["gauss"] = _loader
