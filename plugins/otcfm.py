"""OT-CFM: flow matching on minibatch optimal transport couplings (Tong et al. 2023; torchcfm;
Pooladian et al. 2023), docs/design.md "OT flow matching".

A velocity field v(t, x) is regressed on straight paths between pairs of a source batch x0 and
a target batch x1 coupled by the exact OT plan of the batch (`ot.emd`, uniform weights, squared
Euclidean cost; pairs sampled from the plan): `x_t = (1 - t) x0 + t x1 + sigma eps`,
`loss = mean ||v(t, x_t) - (x1 - x0)||^2`. No potential and no saddle. `transport` integrates
dx/dt = v(t, x) from t = 0 to 1 with a fixed-step solver (`ode_method`, `ode_steps`); the
minibatch OT coupling keeps the paths nearly straight, so few steps suffice.
`diagnostics` reports the number of velocity evaluations per map (nfe) and the straightness
of the learned paths (mean over elements of the integrated ||v - (x(1) - x(0))||^2: 0 for
straight paths).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import ot
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from otzoo.data.pairs import DataConfig
from otzoo.data.spec import PairSpec
from otzoo.data.transforms import rotate_volumes, unit_range, z_rotation_matrices
from otzoo.data.vectors import vector_dim
from otzoo.errors import ConfigError, check_value
from otzoo.nets import MLP, UNet3D
from otzoo.nets.common import ema_copy, ema_update
from otzoo.solver import Batches, PairInfo, Solver, SolverConfig

ODE_METHODS = {"euler": 1, "midpoint": 2, "rk4": 4}  # velocity evaluations per step
COUPLINGS = ("ot", "independent")


@dataclass(frozen=True)
class OTCFMConfig(SolverConfig):
    lr: float = 1e-3  # Adam lr of the velocity field
    sigma: float = 0.0  # std of the noise around the straight paths
    coupling: str = "ot"  # ot (minibatch exact OT, OT-CFM) | independent (plain CFM)
    ot_batch: int = 0  # draws per side in one OT plan; 0: the batch (larger: used over steps)
    ode_method: str = "midpoint"  # euler | midpoint | rk4 (fixed steps)
    ode_steps: int = 16  # integration steps of transport
    hidden: tuple[int, ...] = (256, 256, 256)  # velocity MLP widths for vectors
    activation: str = "silu"  # velocity MLP activation
    v_base: int = 16  # voxel velocity: UNet3D width (time enters as an extra input channel)
    v_depth: int = 2  # UNet3D levels
    ema: float = 0.0  # >0: transport with an exponential moving average of v (damps swings)
    time_film: int = 0  # voxels, >0: a time embedding of this width scales/shifts every UNet stage
    v_hue_plane: bool = False  # voxels: v moves each voxel only along gray and the input's hue
    align_views: int = 0  # voxels, >0: pair by OT over this many turns about depth (rotation z)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_value("sigma", self.sigma, lambda v: v >= 0, "a number >= 0")
        check_value("coupling", self.coupling, lambda v: v in COUPLINGS, " | ".join(COUPLINGS))
        check_value(
            "ode_method", self.ode_method, lambda v: v in ODE_METHODS, " | ".join(ODE_METHODS)
        )
        check_value("ode_steps", self.ode_steps, lambda v: v >= 1, "an integer >= 1")
        check_value("ot_batch", self.ot_batch, lambda v: v >= 0, "an integer >= 0")
        check_value("time_film", self.time_film, lambda v: v >= 0, "an integer >= 0")
        check_value("align_views", self.align_views, lambda v: v >= 0, "an integer >= 0")


class _VectorVelocity(nn.Module):
    """v(t, x) = MLP([x, t])."""

    def __init__(self, dim: int, hidden: tuple[int, ...], activation: str) -> None:
        super().__init__()
        self.net = MLP(dim + 1, dim, hidden=hidden, activation=activation)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return self.net(torch.cat([x, t.view(-1, 1).to(x.dtype)], dim=1))


class _VoxelVelocity(nn.Module):
    """v(t, x) = UNet3D(x, t broadcast as one extra channel); with `film` > 0 also a learned
    embedding of t's Fourier features that scales and shifts every UNet stage."""

    FREQUENCIES = 8  # sin/cos of pi * 2^k t, k < 8: resolves t to ~1/256 of the path

    def __init__(
        self, channels: int, base: int, depth: int, film: int = 0, hue_plane: bool = False
    ) -> None:
        super().__init__()
        self.net = UNet3D(
            channels,
            base=base,
            depth=depth,
            noise_channels=1,
            residual=False,
            cond_dim=film,
            hue_plane=hue_plane,
        )
        self.embed = (
            nn.Sequential(nn.Linear(2 * self.FREQUENCIES, film), nn.SiLU(), nn.Linear(film, film))
            if film
            else None
        )

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        t = t.to(x.dtype)
        tt = t.view(-1, 1, 1, 1, 1).expand(x.shape[0], 1, *x.shape[2:])
        return self.net(x, tt, None if self.embed is None else self.film_input(t))

    def film_input(self, t: Tensor) -> Tensor:
        """The time embedding [N, film] that every UNet stage is scaled and shifted by."""
        assert self.embed is not None, "built with film=0"
        angles = t[:, None] * (torch.pi * 2.0 ** torch.arange(self.FREQUENCIES, device=t.device))
        return self.embed(torch.cat([angles.sin(), angles.cos()], dim=1))


def _square_distances(a: Tensor, b: Tensor) -> Tensor:
    """[len(a), len(b)] squared Euclidean distances of flattened samples, as a float32 product
    on their device (5x faster than a float64 cdist at 1,024 voxel draws on one core)."""
    a, b = a.detach().flatten(1).float(), b.detach().flatten(1).float()
    return (a.square().sum(1)[:, None] + b.square().sum(1)[None] - 2 * a @ b.T).clamp_min(0)


def _plan_columns(cost: Tensor) -> Tensor:
    """The exact OT plan of a cost matrix (uniform weights), as one column j per row i: the
    plan's permutation for a square cost (no random draw, so a re-drawn plan is the same
    plan), otherwise drawn from i's row of the plan (torch's global RNG)."""
    weights = [np.full(n, 1 / n) for n in cost.shape]
    plan = torch.from_numpy(ot.emd(*weights, cost.double().cpu().numpy()))
    if cost.shape[0] == cost.shape[1]:
        return plan.argmax(dim=1)
    return torch.multinomial(plan / plan.sum(dim=1, keepdim=True), 1).squeeze(1)


def ot_pairs(x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
    """Pairs (i, j) from the exact OT plan between the two batches (uniform weights, squared
    Euclidean cost): every source i once."""
    return torch.arange(len(x0)), _plan_columns(_square_distances(x0, x1))


def _turn_about_depth(x: Tensor, angle: float) -> Tensor:
    """Voxels [N, C, D, H, W] in [-1, 1] turned by `angle` degrees about the depth axis (the
    data's rotation z: trilinear, empty outside)."""
    if angle % 360 == 0:
        return x
    mats = z_rotation_matrices(torch.full((len(x),), angle))
    return rotate_volumes(unit_range(x), mats).to(x.dtype) * 2 - 1


def aligned_ot_pairs(x0: Tensor, x1: Tensor, views: int) -> tuple[Tensor, Tensor]:
    """Equivariant minibatch OT (Klein, Kraemer, Noe 2023, "Equivariant flow matching"): the
    cost of a pair is its squared distance after turning x1[j] about the depth axis by the best
    of `views` equally spaced angles, and each source is paired with its partner turned so.
    For data whose distribution is invariant to such turns (rotation z) the partner then has
    the source's orientation, so the regression target no longer averages over orientations.
    The turned partners are resampled a second time (trilinear), so they are a little blurred:
    turning the sources back instead kept the targets sharp but learned less (docs/results.md).
    Distances are taken on the grid pooled 2x and turned there (the best angle needs no fine
    detail; 2,048 draws a side, 12 views: ~2x a plain plan's time on one core). Returns the
    pairs' source indices and their turned partners [len(x0), C, D, H, W]."""
    even = all(side % 2 == 0 for side in x0.shape[2:])

    def small(v: Tensor) -> Tensor:
        return F.avg_pool3d(v.detach().float(), 2) if even else v.detach().float()

    a, b = small(x0), small(x1)
    angles = [k * 360.0 / views for k in range(views)]
    # the least cost so far and its turn stay on the batches' device (the plan copies once)
    best: Tensor | None = None
    which = torch.zeros(len(x0), len(x1), dtype=torch.long, device=a.device)
    for k, angle in enumerate(angles):
        cost = _square_distances(a, _turn_about_depth(b, angle))
        if best is None:
            best = cost
        else:
            better = cost < best
            best = torch.where(better, cost, best)
            which[better] = k
    assert best is not None, "views >= 1"
    j = _plan_columns(best)
    i = torch.arange(len(x0))
    turns = which[i.to(a.device), j.to(a.device)].cpu()
    partners = x1[j.to(x1.device)].clone()
    for k in turns.unique().tolist():
        rows = (turns == k).nonzero().squeeze(1).to(x1.device)
        partners[rows] = _turn_about_depth(partners[rows], angles[k])
    return i, partners


class OTCFM(Solver):
    summary = "OT flow matching (Tong et al. 2023): velocity on minibatch-OT straight paths, ODE"
    tags = frozenset({"voxel", "vector", "neural"})
    Config = OTCFMConfig
    presets = {
        "tiny": {"hidden": (32, 32), "v_base": 8, "v_depth": 1, "ode_steps": 4},
        # quick on 3-5 (one thread, 2026-12-02/03): ema 0.99 holds the level (without: 0.90-1.00,
        # fid 12-49); v_base 16 over 8: 0.95 at 1.5 / 3.0 min (seeds 0 / 1; 8: 3.0 / 3.0), fid
        # 7.7 / 10.7 at 10 min (8: 12.3 / 21.8), 0.95-0.99 from step ~450 on; time_film 64 on
        # top: purity 0.94 / 0.94 (without 0.93 / 0.92), lit share 0.222 / 0.220 (0.224 / 0.232);
        # ot_batch 1024 on top (plans used over 32 steps): purity 0.963 / 0.950, lit share
        # 0.211 / 0.214, fid 6.4 / 7.9 at 10 min (1,600 steps). Purity under the 2026-12-04 rule
        # (dim gray counts): 0.940 / 0.935; the hue plane on digit pairs: pair_presets
        "quick": {
            "v_base": 16,
            "time_film": 64,
            "ot_batch": 1024,
            "lr": 3e-4,
            "ode_steps": 8,
            "ema": 0.99,
            "steps": 1600,
        },
        "full": {"v_base": 32, "v_depth": 3, "lr": 2e-4, "ema": 0.999},  # full: not measured
    }

    @classmethod
    def pair_presets(cls, spec: PairSpec, preset: str, data: DataConfig) -> dict[str, Any]:
        if spec.kind == "digits" and preset == "quick":
            # the velocity's hue plane (3-5, 1,600 steps, one thread, AMD, 2026-12-04, seeds 0 /
            # 1): purity 0.995 / 0.993 against 0.940 / 0.935, target accuracy 0.98 / 0.99, worst
            # color 0.96 / 0.96, fid 9.1 / 7.5, lit 0.209 / 0.208. Not on noise pairs: noise's
            # mean has no hue to keep.
            digits: dict[str, Any] = {"v_hue_plane": True}
            if data.rotation != "none":
                # rotated digits want a larger plan (rotation z, with the plane, 15 min, one
                # thread, AMD, 2026-12-04, seeds 0 / 1): ot_batch 2048 0.76 / 0.74 target
                # accuracy at 10 min, 0.74 / 0.72 at 15, fid 27.9 / 42.3, against 1,024's 0.64 /
                # 0.58, 0.61 / 0.65, 43.8 / 48.0; 4,096 (before the plane, seed 0) no better.
                # Measured on z only; 3d rotations take it untested. And a longer average of
                # the field (ema 0.995, ~200 steps; 2026-12-06, seeds 0 / 1, 15 min): 0.84 / 0.78
                # against 0.76 / 0.74, fid 14.5 / 21.6 against 17.5 / 24.1; the leaderboard's
                # cells (1,600 steps, seed 0): extruded 0.84 against 0.80, point clouds 0.56
                # against 0.55 (fid 28.4 against 29.8). 0.997 (seed 0): 0.81.
                digits["ot_batch"] = 2048
                digits["ema"] = 0.995
                if data.style == "pointcloud":
                    # rotated point clouds peak at 6-8 min and fall back; ending on the map
                    # select_every's training-data score prefers (15 min, 2026-12-05, seeds 0 /
                    # 1): 0.52 / 0.42 against 0.36 / 0.37 for the last map, fid 51.8 / 91.3
                    # against 75.0 / 101.7 (docs/results.md, "Rotation z: `otcfm`")
                    digits["select_every"] = 200
            return digits
        if vector_dim(spec) is None or preset == "tiny":
            return {}
        # W2 dim 2, seed 0, one thread (2026-12-03): one plan a batch of 512, 4,000 steps: 0.844
        # (1.7 CPU min); plans of 1,024 draws used over steps at batch 512 / 256 / 128 / 64 and
        # 8,000 / 14,000 / 28,000 / 50,000 steps: 0.439 / 0.303 / 0.223 / 0.129 (6-8 CPU min):
        # many small steps from one good plan beat few large ones. No average of the field.
        # lr 1e-3 instead of the quick preset's 3e-4 (seed 0, 60,000 steps): dim 16 / 32 4.35 ->
        # 3.90 / 8.05 -> 7.59, but over 10 CPU min at 32; 50,000 steps: dim 2 0.061, dim 32 7.56
        # (9.8-10.5 CPU min at dim 32, benchmarks/w2_bench.md).
        return {
            "batch_size": 64,
            "ot_batch": 1024,
            "steps": 50000,
            "lr": 1e-3,
            "lr_schedule": "cosine",
            "ema": 0.0,
        }

    def __init__(self, config: OTCFMConfig, info: PairInfo, device: torch.device) -> None:
        super().__init__(config, info, device)
        c = config
        if c.align_views and (info.kind != "voxel" or c.coupling != "ot"):
            raise ConfigError(
                f"align_views={c.align_views} turns voxel partners inside the OT coupling, but "
                f"this run has {'coupling=' + c.coupling if info.kind == 'voxel' else 'vectors'}; "
                "use --set align_views=0"
            )
        if info.kind == "voxel":
            self.v: nn.Module = _VoxelVelocity(
                info.x_shape[0], c.v_base, c.v_depth, c.time_film, c.v_hue_plane
            )
        else:
            self.v = _VectorVelocity(info.x_dim, c.hidden, c.activation)
        self.v = self.v.to(device)
        self.modules = {"v": self.v}
        if c.ema > 0:
            self.modules["v_ema"] = ema_copy(self.v)
        self.optimizers = {"v": torch.optim.Adam(self.v.parameters(), lr=c.lr)}
        self._plan: tuple[Tensor, Tensor] | None = None  # paired draws of the current plan
        self._plan_state: Tensor | None = None  # the batch state its draws started from
        self._plan_used = 0  # its pairs used so far

    def step(self, batches: Batches) -> dict[str, float]:
        c = self.config
        x0, x1 = self._pairs(batches)
        t = torch.rand(len(x0), device=x0.device)
        tb = t.view(-1, *([1] * (x0.dim() - 1)))
        xt = (1 - tb) * x0 + tb * x1
        if c.sigma > 0:
            xt = xt + c.sigma * torch.randn_like(xt)
        loss = F.mse_loss(self.v(t, xt), x1 - x0)
        self.optimizers["v"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["v"].step()
        if c.ema > 0:
            ema_update(self.modules["v_ema"], self.v, c.ema)
        return {"loss": float(loss.detach())}

    def _pairs(self, batches: Batches) -> tuple[Tensor, Tensor]:
        """This step's (x0, x1) pairs. With ot_batch above the batch size, one plan over
        ot_batch draws per side serves the next ot_batch // batch_size steps, batch_size of
        its pairs each (each pair once): the plan pairs like with like (e.g. digits at similar
        rotations) far better than a plan of one batch, at a fraction of a plan a step. After a
        resume the plan is re-drawn from the batch state saved before its draw (exact)."""
        c, b = self.config, batches.batch_size
        if c.coupling != "ot" or c.ot_batch <= b:
            x0, x1 = batches.x(), batches.y()
            return self._couple(x0, x1) if c.coupling == "ot" else (x0, x1)
        if self._plan_state is None or self._plan_used + b > c.ot_batch:
            self._plan_state, self._plan_used, self._plan = batches.state(), 0, None
        if self._plan is None:  # a new plan, or after a resume the current one again
            batches.set_state(self._plan_state)  # (after a resume its draws end where they did)
            x0, x1 = batches.x(c.ot_batch), batches.y(c.ot_batch)
            self._plan = self._couple(x0, x1)
        used, self._plan_used = self._plan_used, self._plan_used + b
        return self._plan[0][used : used + b], self._plan[1][used : used + b]

    def _couple(self, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        """(x0, x1) reordered so that x1[i] is x0[i]'s OT partner (with align_views turned into
        x0[i]'s orientation)."""
        c = self.config
        if c.align_views:
            return x0, aligned_ot_pairs(x0, x1, c.align_views)[1]
        return x0, x1[ot_pairs(x0, x1)[1].to(x1.device)]

    def extra_state(self) -> dict[str, Any]:
        if self._plan_state is None:
            return {}
        return {"plan_state": self._plan_state, "plan_used": self._plan_used}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._plan, self._plan_state = None, state.get("plan_state")
        self._plan_used = int(state.get("plan_used", 0))

    def _integrate(self, x: Tensor, keep: bool = False) -> tuple[Tensor, list[Tensor]]:
        """x(1) from x(0) = x by the fixed-step solver; with `keep`, the velocities used."""
        c = self.config
        h = 1.0 / c.ode_steps
        used: list[Tensor] = []
        field = self.modules["v_ema"] if c.ema > 0 else self.v

        def v(t: float, y: Tensor) -> Tensor:
            out = field(torch.full((len(y),), t, device=y.device), y)
            if keep:
                used.append(out)
            return out

        for k in range(c.ode_steps):
            t = k * h
            if c.ode_method == "euler":
                x = x + h * v(t, x)
            elif c.ode_method == "midpoint":
                x = x + h * v(t + h / 2, x + h / 2 * v(t, x))
            else:
                k1 = v(t, x)
                k2 = v(t + h / 2, x + h / 2 * k1)
                k3 = v(t + h / 2, x + h / 2 * k2)
                k4 = v(t + h, x + h * k3)
                x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return x, used

    def transport(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        return self._integrate(x)[0]

    @torch.no_grad()
    def diagnostics(self, x: Tensor) -> dict[str, float]:
        """nfe: velocity evaluations per map; straightness: mean over the solver's evaluations
        and elements of ||v - (x(1) - x(0))||^2 (0: straight paths, cheap to integrate)."""
        end, used = self._integrate(x, keep=True)
        chord = end - x
        gaps = torch.stack([(u - chord).square().flatten(1).mean(dim=1) for u in used])
        nfe = self.config.ode_steps * ODE_METHODS[self.config.ode_method]
        return {"nfe": float(nfe), "straightness": float(gaps.mean())}
