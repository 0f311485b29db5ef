"""Discrete OT baselines with POT: exact EMD (`pot`), entropic Sinkhorn (`pot-sinkhorn`) and the
closed-form linear Bures map (`pot-linear`), fitted once on the flattened training sets.

The first `step` fits on `Batches.x_all` / `y_all` (a seeded subset of at most `max_samples`
per side: 4096 by default for the two plan solvers, all for `pot-linear`); later steps return
the same numbers (presets set steps=1). Until then `transport` is the identity. The fitted
state (plain tensors) lives in `extra_state`, so checkpoints round-trip like any neural solver's.

- `pot`: plan by `ot.emd` with uniform weights on the squared Euclidean cost; a training source
  maps to its barycentric projection, any other x to x + the displacement of its nearest
  training source. O(n^3) time and O(n m) memory: too large a solve is refused up front.
- `pot-sinkhorn`: log-domain Sinkhorn on the cost divided by its mean (or max), regularisation
  `epsilon` on that scale; the entropic map `T(x) = sum_j softmax_j(v_j - c(x, y_j)/eps) y_j`
  (v = POT's `log_v`) is the barycentric projection in-sample and extends it out-of-sample.
- `pot-linear`: the Gaussian (Bures) map between the empirical moments, `T(x) = A(x - m1) + m2`,
  biased covariances as `ot.gaussian.empirical_bures_wasserstein_mapping`. For voxels D = 12288
  a D x D covariance (1.2 GB in float64, O(D^3) square roots) is not affordable, so both
  covariances are written as `V C V^T + reg (I - V V^T)` with V an orthonormal basis of the
  pooled centred samples (their span, or its top max_rank principal directions: exact from the
  Gram matrix up to GRAM_MAX samples, by randomised SVD beyond) and a ridge
  reg = bures_reg * (mean per-element variance) * D / min(n, m): shrinkage that grows with D/n
  like Ledoit-Wolf's, vanishing for many samples of low-dimensional vectors, while with
  n << D (voxels: D = 12288, n ~ 400) the empirical
  covariances are rank-deficient and a small ridge lets the map blow up directions the source
  samples never span (3-5 at 16^3: test transport cost 0.47 with a ridge of 1e-3 times the
  mean variance, outputs in [-10, 9]; 0.07 with the default). The map is then
  `x - m1 + m2 + V (A_r - I) V^T (x - m1)`, A_r the r x r Bures matrix from
  `ot.gaussian.bures_wasserstein_mapping`: exact (with reg) when the basis spans R^D, and the
  identity displacement outside the sampled subspace otherwise.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import ot
import torch

from otzoo.errors import ConfigError
from otzoo.runtime import seeded_rng
from otzoo.solver import Batches, PairInfo, Solver, SolverConfig

GIB = 2**30
EMD_SECONDS_AT_1000 = 1.0  # measured ~0.5 s for 1000 x 1000 on one CPU core; doubled
GRAM_MAX = 4096  # pot-linear: up to this many samples, an exact Gram eigendecomposition
_CHUNK = 256  # rows of x per distance block in transport
FEWER = "--set max_samples=N, or --set max_per_digit=N for digit pairs"
_ONE_STEP = {"steps": 1, "ckpt_every": 1, "image_every": 1}
COUNTS = ("rank",)  # numbers a fit reports that are counts, kept out of the logged losses


@dataclass(frozen=True)
class EMDConfig(SolverConfig):
    max_samples: int = 4096  # fit on a seeded subset of at most this many per side (0: all)
    max_gib: float = 8.0  # refuse solves whose n x m arrays would need more (a third of 24 GiB)
    max_seconds: float = 900.0  # refuse exact solves estimated to take longer
    emd_max_iter: int = 10_000_000  # network-simplex iteration cap


@dataclass(frozen=True)
class SinkhornConfig(SolverConfig):
    # Entropic regularisation on the normalised cost. On 3-5 at 16^3 (400 x 400, cost / mean in
    # [0.15, 2]) each source spreads over ~3 targets at 0.01 (5000 iterations, unconverged),
    # ~11 at 0.03 (1300 iterations) and ~27 at 0.05: 0.03 keeps outputs sharp and fast.
    epsilon: float = 0.03  # entropic regularisation on the cost divided by its mean (or max)
    max_samples: int = 4096  # fit on a seeded subset of at most this many per side (0: all)
    cost_norm: str = "mean"  # "mean" | "max": what the squared-distance cost is divided by
    sinkhorn_iters: int = 5000  # Sinkhorn iteration cap
    sinkhorn_tol: float = 1e-8  # stop when the L2 marginal error falls below
    max_gib: float = 8.0  # refuse fits whose arrays would need more memory than this


@dataclass(frozen=True)
class LinearConfig(SolverConfig):
    bures_reg: float = 0.1  # ridge on both covariances, times mean element variance * D / n
    max_rank: int = 1024  # largest basis of the low-rank formulation
    max_samples: int = 0  # fit on a seeded subset of at most this many per side (0: all)
    max_gib: float = 8.0  # refuse fits whose arrays would need more memory than this


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.detach().flatten(1).double()


def _sq_dists(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """||x_i - y_j||^2 for the rows of x and y."""
    return torch.cdist(x, y).square()


def _subset(t: torch.Tensor, cap: int, stream: int) -> torch.Tensor:
    """At most `cap` rows (0: all), chosen by a fixed seed so a refit gives the same fit."""
    if cap <= 0 or len(t) <= cap:
        return t
    pick = torch.randperm(len(t), generator=torch.Generator().manual_seed(stream))[:cap]
    return t[pick.sort().values.to(t.device)]


class _Discrete(Solver):
    """Shared plumbing: fit once on the whole training sets, keep the fit as plain tensors."""

    tags = frozenset({"voxel", "vector", "discrete"})
    amp_safe = False  # fits run in float64: bf16 autocast has nothing to speed up
    presets = {name: dict(_ONE_STEP) for name in ("tiny", "quick", "full")}
    fields: tuple[str, ...] = ()  # names of the fitted tensors

    def __init__(self, config: SolverConfig, info: PairInfo, device: torch.device) -> None:
        super().__init__(config, info, device)
        self.fit_state: dict[str, torch.Tensor] = {}
        self.losses: dict[str, float] = {}
        self.counts: dict[str, float] = {}  # what the fit used (samples, rank): not losses

    def _check_memory(self, n_bytes: float, what: str) -> None:
        limit = float(self.config.max_gib)
        if n_bytes > limit * GIB:
            raise ConfigError(
                f"{self.id}: {what} needs ~{n_bytes / GIB:.1f} GiB (limit max_gib={limit:g}); "
                f"use fewer samples ({FEWER}) or raise --set max_gib"
            )

    def step(self, batches: Batches) -> dict[str, float]:
        if not self.fit_state:
            cap = getattr(self.config, "max_samples", 0)
            x, y = _subset(_flat(batches.x_all), cap, 0), _subset(_flat(batches.y_all), cap, 1)
            state, losses = self.fit(x, y)
            self.counts = {
                "samples": float(len(x)),
                **{k: losses.pop(k) for k in COUNTS if k in losses},
            }
            self.losses = losses
            self.fit_state = {k: v.float().to(self.device) for k, v in state.items()}
        return dict(self.losses)

    def transport(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if not self.fit_state:
            return x.clone()  # not fitted yet: the identity map
        flat = x.detach().flatten(1).to(torch.float32)
        out = torch.cat([self.apply(part) for part in flat.split(_CHUNK)])
        return out.reshape(x.shape).to(x.dtype)

    @abstractmethod
    def fit(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Fit on flattened float64 samples; returns the state tensors and the losses."""

    @abstractmethod
    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The fitted map on flattened float32 samples."""

    def extra_state(self) -> dict[str, Any]:
        return {
            "fit": dict(self.fit_state),
            "losses": dict(self.losses),
            "counts": dict(self.counts),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        fit = state.get("fit", {})
        self.fit_state = {k: fit[k].to(self.device) for k in self.fields if k in fit}
        if self.fit_state and set(self.fit_state) != set(self.fields):
            raise KeyError(f"fitted state lacks {sorted(set(self.fields) - set(fit))}")
        self.losses = {k: float(v) for k, v in state.get("losses", {}).items()}
        self.counts = {k: float(v) for k, v in state.get("counts", {}).items()}


class ExactOT(_Discrete):
    summary = "Exact discrete OT (POT ot.emd): barycentric map + nearest-source displacement"
    Config = EMDConfig
    fields = ("x_train", "displacement")

    def _check_size(self, n: int, m: int, d: int) -> None:
        # cost matrix, plan and POT's internal copy, plus the float64 samples
        self._check_memory(3 * n * m * 8 + (n + m) * d * 8, f"exact OT on {n} x {m} samples")
        seconds = EMD_SECONDS_AT_1000 * (max(n, m) / 1000) ** 3
        if seconds > self.config.max_seconds:
            raise ConfigError(
                f"pot: exact OT on {n} x {m} samples would take ~{seconds / 60:.0f} min (O(n^3), "
                f"limit max_seconds={self.config.max_seconds:g}); use --solver pot-sinkhorn or "
                f"fewer samples ({FEWER})"
            )

    def fit(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        n, m, d = len(x), len(y), x.shape[1]
        self._check_size(n, m, d)
        xs, ys = x.cpu().numpy(), y.cpu().numpy()
        cost = np.maximum(ot.dist(xs, ys), 0.0)
        plan, log = ot.emd(
            np.full(n, 1.0 / n), np.full(m, 1.0 / m), cost, self.config.emd_max_iter, log=True
        )
        if log.get("warning"):
            raise ConfigError(
                f"pot: exact OT stopped early ({log['warning']}); raise --set emd_max_iter "
                "or use --solver pot-sinkhorn"
            )
        mapped = n * (plan @ ys)  # barycentric projection (each row of the plan sums to 1/n)
        state = {"x_train": x, "displacement": torch.from_numpy(mapped).to(x.device) - x}
        return state, {"plan_cost": float((plan * cost).sum()) / d}

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        nearest = _sq_dists(x, self.fit_state["x_train"]).argmin(dim=1)
        return x + self.fit_state["displacement"][nearest]


class SinkhornOT(_Discrete):
    summary = "Entropic discrete OT (POT log-domain Sinkhorn): the entropic map, any x"
    Config = SinkhornConfig
    fields = ("y_train", "log_v", "scale")

    def __init__(self, config: SinkhornConfig, info: PairInfo, device: torch.device) -> None:
        super().__init__(config, info, device)
        if config.cost_norm not in ("mean", "max"):
            raise ConfigError(f"cost_norm={config.cost_norm!r}: use mean or max")
        if not config.epsilon > 0:
            raise ConfigError(f"epsilon={config.epsilon!r}: use a number > 0, e.g. 0.03")

    def fit(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        c = self.config
        n, m, d = len(x), len(y), x.shape[1]
        # cost, normalised cost, plan and two log-domain temporaries
        self._check_memory(5 * n * m * 8 + (n + m) * d * 8, f"Sinkhorn on {n} x {m} samples")
        cost = _sq_dists(x, y)
        scale = cost.mean() if c.cost_norm == "mean" else cost.max()
        scale = scale.clamp(min=torch.finfo(cost.dtype).tiny)
        a = torch.full((n,), 1.0 / n, dtype=x.dtype, device=x.device)
        b = torch.full((m,), 1.0 / m, dtype=x.dtype, device=x.device)
        plan, log = ot.sinkhorn(
            a,
            b,
            cost / scale,
            c.epsilon,
            method="sinkhorn_log",
            numItermax=c.sinkhorn_iters,
            stopThr=c.sinkhorn_tol,
            log=True,
        )
        marginal = (plan.sum(dim=1) - a).abs().sum() + (plan.sum(dim=0) - b).abs().sum()
        stats = torch.stack([(plan * cost).sum() / d, marginal]).tolist()
        state = {"y_train": y, "log_v": log["log_v"], "scale": scale.reshape(1)}
        return state, {"plan_cost": stats[0], "marginal_error": stats[1]}

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fit_state
        logits = s["log_v"] - _sq_dists(x, s["y_train"]) / (s["scale"] * self.config.epsilon)
        return torch.softmax(logits, dim=1) @ s["y_train"]


class LinearOT(_Discrete):
    summary = "Closed-form Gaussian (Bures) map between empirical moments; low-rank for voxels"
    Config = LinearConfig
    fields = ("mean_x", "mean_y", "basis", "b")

    def __init__(self, config: LinearConfig, info: PairInfo, device: torch.device) -> None:
        super().__init__(config, info, device)
        if not config.bures_reg >= 0:
            raise ConfigError(f"bures_reg={config.bures_reg!r}: use a number >= 0")
        if config.max_rank < 1:
            raise ConfigError(f"max_rank={config.max_rank}: use an integer >= 1")

    def _basis(self, pooled: torch.Tensor) -> torch.Tensor:
        """Orthonormal D x r basis: all of R^D, the span of the samples, or its top directions."""
        k, d = pooled.shape
        if d <= self.config.max_rank:
            return torch.eye(d, dtype=pooled.dtype, device=pooled.device)
        if k <= GRAM_MAX:  # top principal directions, exactly, via the k x k Gram matrix
            vals, vecs = torch.linalg.eigh(pooled @ pooled.T)  # ascending
            keep = (vals > vals[-1] * 1e-9).nonzero().squeeze(1)[-self.config.max_rank :]
            return pooled.T @ (vecs[:, keep] / vals[keep].sqrt())
        with seeded_rng(0, pooled.device):  # same basis for the same data
            _, _, v = torch.svd_lowrank(pooled, q=self.config.max_rank, niter=4)
        return v

    def fit(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        n, m, d = len(x), len(y), x.shape[1]
        rank = min(d, n + m, self.config.max_rank)
        self._check_memory(3 * (n + m) * d * 8 + 2 * d * rank * 8, f"a Bures map in {d} dims")
        mean_x, mean_y = x.mean(dim=0), y.mean(dim=0)
        xc, yc = x - mean_x, y - mean_y
        var = (xc.square().sum() / n + yc.square().sum() / m) / (2 * d)
        reg = self.config.bures_reg * float(var) * d / min(n, m)
        basis = self._basis(torch.cat([xc, yc]))
        px, py = xc @ basis, yc @ basis
        eye = torch.eye(basis.shape[1], dtype=x.dtype, device=x.device)
        cov_x, cov_y = px.T @ px / n + reg * eye, py.T @ py / m + reg * eye
        zero = torch.zeros(1, basis.shape[1], dtype=x.dtype, device=x.device)
        a_r, _ = ot.gaussian.bures_wasserstein_mapping(zero, zero, cov_x, cov_y)
        b = (a_r + a_r.T) / 2 - eye
        state = {"mean_x": mean_x, "mean_y": mean_y, "basis": basis, "b": b}
        mapped = xc + mean_y + (px @ b) @ basis.T
        cost = float((mapped - x).square().mean())
        return state, {"train_cost": cost, "rank": float(basis.shape[1])}

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fit_state
        xc = x - s["mean_x"]
        return xc + s["mean_y"] + ((xc @ s["basis"]) @ s["b"]) @ s["basis"].T
