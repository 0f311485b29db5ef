"""Scores of a map against a KNOWN optimal map (Korotin et al. 2021, W2 benchmark).

L2-UVP: the map's squared error as a percentage of Var(Q) (0 is exact, 100 is as bad as
mapping everything to Q's mean). Cosine: how well the displacement T(x) - x points along the
true displacement T*(x) - x (1 is perfect, 0 for the identity map).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from otzoo.data.benchmarks import KnownMapPair

_CHUNK = 4096  # rows per transport call in evaluate_map


def _flat_pair(a: Tensor, b: Tensor, what: str) -> tuple[Tensor, Tensor]:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {list(a.shape)} vs {list(b.shape)}")
    return a.detach().flatten(1).double(), b.detach().flatten(1).double()


def l2_uvp(pred: Tensor, true: Tensor, var_q: float) -> float:
    """100 * E||pred - true||^2 / var_q (sums over every non-batch axis)."""
    p, t = _flat_pair(pred, true, "l2_uvp")
    return float(100.0 * ((p - t) ** 2).sum(dim=1).mean() / var_q)


def cosine_metric(x: Tensor, pred: Tensor, true: Tensor) -> float:
    """E<pred - x, true - x> / sqrt(E||pred - x||^2 E||true - x||^2); 0 when either is zero."""
    x64, p = _flat_pair(x, pred, "cosine_metric")
    _, t = _flat_pair(x, true, "cosine_metric")
    dp, dt = p - x64, t - x64
    denom = ((dp**2).sum(dim=1).mean() * (dt**2).sum(dim=1).mean()).sqrt()
    if denom == 0:
        return 0.0
    return float((dp * dt).sum(dim=1).mean() / denom)


def evaluate_map(
    pair: KnownMapPair,
    transport: Callable[[Tensor], Tensor],
    n: int = 2**14,
    seed: int = 12345,
) -> dict[str, float]:
    """L2-UVP and cosine of `transport` on n fresh samples of P drawn with a fixed seed."""
    x = pair.sample_x(n, torch.Generator().manual_seed(seed))
    true = pair.true_map(x)
    pred = torch.cat([transport(part).detach() for part in x.split(_CHUNK)])
    return {"l2_uvp": l2_uvp(pred, true, pair.var_q), "cosine": cosine_metric(x, pred, true)}
