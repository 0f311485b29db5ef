"""ENOT: expectile-regularised neural optimal transport (Buzun, Bobrin, Dylov, NeurIPS 2024).

A map T and a potential g; no inner conjugate solve and no K_T loop: one step updates both on
one pair of batches, x and y paired as drawn (docs/design.md, "ENOT"). With c the quadratic
cost, `yb = stopgrad(T(x))` and `gs(x) = c(x, yb) - g(yb)` (the c-transform of g read at the
map's point):

    g minimises  -(mean g(y) + mean gs(x)) + w (mean L(d1) + mean L(d2)),
                 d1 = stopgrad(gs(x) - c(x, y)) + g(y),  d2 = stopgrad(g(y) - c(x, y)) + gs(x)
    T minimises  mean c(x, T(x)) - g(T(x))        (g frozen)

with the expectile loss `L(d) = tau d^2 for d >= 0, (1 - tau) d^2 otherwise`: it pushes the
pair (g, gs) towards the binding Kantorovich constraint g(y) + gs(x) <= c(x, y) from below
without an inner optimisation. Cost: `||x - y||^2` for vectors (the benchmark's scale), the
per-element mean `||x - y||^2 / D` for voxels (so g starts on the scale of a small network).
With `map="network"` the map is a network that outputs T(x) directly (OTT-JAX's
`is_bidirectional=False` form): an identity-initialised MLP for vectors, a residual UNet3D for
voxels. With `map="gradient"` (the default) both networks are potentials in the correlation
form the paper runs the W2 benchmark with: F(x) = 0.5||x||^2 + f(x), G(y) = 0.5||y||^2 + g(y), cost -<x, y>,
T(x) = grad F(x), and the same two losses with g's value read as -G. An OT map is the gradient
of a convex function, so this form searches a much smaller space than a free network.
`bidirectional` (gradient form only; on by default) alternates steps: odd steps swap the two samples and the
two potentials' roles, so G is also trained as the inverse map's potential (Jacobs & Leger).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from otzoo.conjugate import batch_dot
from otzoo.data.pairs import DataConfig
from otzoo.data.spec import PairSpec
from otzoo.data.vectors import vector_dim
from otzoo.errors import ConfigError, check_value
from otzoo.nets import MLP, UNet3D
from otzoo.nets.common import (
    NORMS,
    VOXEL_NETS,
    NetConfigError,
    ema_copy,
    ema_update,
    zero_output,
)
from otzoo.nets.icnn import QuadraticPlus, potential_gradient
from otzoo.nets.unet3d import hue_plane_project
from otzoo.solver import Batches, PairInfo, Solver, SolverConfig
from otzoo_plugins.saddle import potential_net


@dataclass(frozen=True)
class ENOTConfig(SolverConfig):
    expectile: float = 0.99  # tau of the expectile loss (paper: 0.99; its W2 runs use 1.0)
    expectile_weight: float = 1.0  # w, the regulariser's weight (paper: 0.3 to 1)
    lr_t: float = 3e-4  # Adam lr of the map T (paper 3e-4)
    lr_g: float = 3e-4  # Adam lr of the potential g (paper 3e-4)
    beta1: float = 0.9  # Adam betas of both (paper 0.9, 0.9)
    beta2: float = 0.9  # Adam second-moment decay
    hidden: tuple[int, ...] = (128, 128, 128, 128)  # MLP widths for vectors (paper: 4 x 128)
    activation: str = "elu"  # MLP activation (paper: ELU)
    t_base: int = 16  # voxel map: UNet3D width
    t_depth: int = 2  # UNet3D levels
    g_base: int = 16  # voxel potential: ResNet3D width
    g_levels: int = 2  # ResNet3D levels
    g_norm: str = "group"  # the voxel potentials' normalisation: group | none (as not's f_norm)
    g_context: bool = False  # voxel potentials: FiLM from the input's channel means (its color)
    voxel_net: str = "conv"  # voxel potentials: conv (ResNet3D) | dense (MLP `hidden`, flat grid)
    g_patch: int = 0  # dense voxel g: > 0 first embeds each 2^3 patch in this many features
    color_blind: bool = False  # colored voxels: both potentials read hue-plane coordinates
    t_hue_plane: bool = False  # voxels: the map moves voxels only along gray and the input's hue
    map: str = "gradient"  # "gradient": T = grad of a potential; "network": T(x) from a network
    bidirectional: bool = True  # gradient form: alternate forward and inverse steps
    ema: float = 0.0  # >0: transport with an exponential moving average of the map's network

    def __post_init__(self) -> None:
        super().__post_init__()
        check_value("expectile", self.expectile, lambda v: 0.5 <= v <= 1, "a number in [0.5, 1]")
        check_value("map", self.map, lambda v: v in ("network", "gradient"), "network or gradient")
        check_value("voxel_net", self.voxel_net, lambda v: v in VOXEL_NETS, " | ".join(VOXEL_NETS))
        check_value("g_norm", self.g_norm, lambda v: v in NORMS, " | ".join(NORMS))
        check_value("g_patch", self.g_patch, lambda v: v >= 0, "an integer >= 0")
        if self.bidirectional and self.map != "gradient":
            raise ConfigError(
                "bidirectional=true needs map=gradient (both directions use a potential's "
                "gradient); with map=network add --set bidirectional=false"
            )
        check_value("expectile_weight", self.expectile_weight, lambda v: v >= 0, "a number >= 0")
        for key in ("beta1", "beta2"):
            check_value(key, getattr(self, key), lambda v: 0 <= v < 1, "a number in [0, 1)")


def expectile_loss(d: Tensor, tau: float) -> Tensor:
    """tau d^2 where d >= 0, (1 - tau) d^2 elsewhere (least asymmetrically weighted squares)."""
    weight = torch.where(d >= 0, torch.full_like(d, tau), torch.full_like(d, 1.0 - tau))
    return weight * d.square()


class _VectorMap(nn.Module):
    """x + MLP(x) with the last layer at zero: the identity at init."""

    def __init__(self, dim: int, hidden: tuple[int, ...], activation: str) -> None:
        super().__init__()
        self.net = MLP(dim, dim, hidden=hidden, activation=activation, residual=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ENOT(Solver):
    summary = "ENOT (Buzun et al. 2024): two potentials, expectile-regularised, no inner loop"
    tags = frozenset({"voxel", "vector", "neural"})
    Config = ENOTConfig
    presets = {
        "tiny": {"hidden": (32, 32), "t_base": 8, "t_depth": 1, "g_base": 8, "g_levels": 1},
        # quick on 3-5 (one thread, 10 min, seeds 0 / 1, 2026-12-04): batch 16 takes twice the
        # steps of batch 32 (~167 a minute, the step is a double backward through the ResNet):
        # 0.92 / 0.91 target accuracy (32: 0.90 / 0.81), fid 17.5 / 24.8 (35.9 / 53.0), worst
        # color 0.88 / 0.83 (0.82 / 0.69), but purity 0.86 / 0.83 (0.89 / 0.88). 1,700 steps are
        # those 10 minutes (a constant lr: the steps only say where the run stops). Digit pairs
        # take dense potentials instead (pair_presets).
        "quick": {"t_base": 8, "g_base": 8, "batch_size": 16, "steps": 1700},
        "full": {"t_base": 32, "t_depth": 3, "g_base": 32},
    }

    @classmethod
    def pair_presets(cls, spec: PairSpec, preset: str, data: DataConfig) -> dict[str, Any]:
        """The bidirectional gradient form is the default for both kinds (3-5, quick, seed 0,
        10 min: 0.87 target accuracy against 0.46 for the network map; the one-way gradient form
        0.26 at 3 min against 0.57). Vectors beyond tiny: 3 x 256 potentials, lr 1e-3 with a
        cosine decay; 34,000 steps of batch 256 below dim 16, 50,000 of batch 128 from 16 on
        (7.6-9.1 CPU min per W2 cell on one thread of an Intel Xeon, 10.9-12.1 on a slower
        AMD EPYC, where `bench w2 --cpu-budget 10` holds a cell to 10 with its decay fitted).
        Measured on the W2 benchmark (seed 0, UVP %, dim 8 unless said;
        benchmarks/w2_bench.md): network map 10.5, one-way gradient 5.72,
        bidirectional 1.9 (10k steps, 3 x 128); 40k steps 3 x 128: 0.559 (dim 16 1.31, dim 32
        3.57); 28k steps 3 x 256: 0.574 (dim 32 2.44). Batch 128 at
        50k steps: dim 32 1.67, dim 16 0.735 (batch 256: 0.784), but dim 4 0.313 (0.283) and
        dim 2 0.0519 at 45k (0.0483): so the switch at 16, as in the saddle presets. The
        expectile term at weight 0.3 instead of 1 (2026-12-05, dims 2 / 4 / 8 / 16 / 32), seed
        0: 0.0472 / 0.263 / 0.532 / 0.554 / 1.53 against 0.0483 / 0.283 / 0.574 / 0.735 / 1.67;
        seed 1: 0.0612 / 0.286 / 0.549 / 0.670 / 1.69 against 0.0562 / 0.291 / 0.553 / 0.794 /
        1.99 (weight 0.1 at dim 4, seed 0: 0.272). 34,000 steps instead of 28,000 once a step
        cost 16% less (Intel Xeon, 2026-12-07, seeds 0 / 1, 8.3-9.1 CPU min): dims 2 / 4 / 8
        0.0520 / 0.252 / 0.467 and 0.0555 / 0.263 / 0.490. Digit
        pairs, quick: the map's hue plane (3-5, 10 min, one thread, AMD, 2026-12-04, seeds 0 /
        1: purity 0.915 / 0.891 against 0.840 / 0.830, target accuracy 0.87 / 0.90 against
        0.89 / 0.89, lit share 0.228 / 0.238 against 0.235 / 0.241, same step cost)."""
        if spec.kind == "digits" and preset == "quick":
            # dense potentials on the flat grid, 4,000 steps of batch 32 with a cosine decay
            # (3-5, one thread, AMD, 2026-12-05, seeds 0 / 1; ~1,500 steps a minute, the ResNet
            # ones ~170 at batch 16): 0.91 / 0.93 target accuracy after 3 minutes, purity 0.930
            # / 0.935, lit 0.233 / 0.237, where the ResNet potentials reached 0.87 / 0.90, 0.915
            # / 0.891 and 0.228 / 0.238 in 10. At a constant lr the dense map passes 0.95 by
            # minute 3-4 and then keeps moving into fog (batch 64, seed 0: transport cost 0.04
            # -> 0.21 by minute 6, purity 0.90, lit 0.25; docs/results.md, "`otcfm` and
            # `enot` on 3-5").
            # g's 2^3 patch embedding (2026-12-05, same runs, ~900 steps a minute, 4,000 steps
            # in 3.6-4.2 min): 0.97 / 0.96, worst color 0.93 / 0.91 against 0.81 / 0.90, fid
            # 10.0 / 17.4 against 14.5 / 32.2, purity 0.929 / 0.935, lit 0.240 / 0.239; seed 2
            # 0.91 against 0.90 (0.97 at minute 2, then back).
            # The expectile at 1.0, the paper's W2 setting (3-5, Intel Xeon, 2026-12-07, seeds
            # 0 / 1 / 2): 0.95 at 2 minutes on every seed (0.99: 3.9 / never / never), 0.98 /
            # 0.98 / 0.92 at the end against 0.95 / 0.94 / 0.90, purity and lit share level.
            # Color-blind potentials (`color_blind`; the same runs, 2026-12-07): purity 0.955 /
            # 0.947 / 0.945 against 0.928 / 0.926 / 0.923, fid 8.2 / 15.7 / 22.0 against 9.3 /
            # 17.9 / 29.1, worst color 0.93 / 0.91 / 0.90 against 0.96 / 0.96 / 0.76, target
            # accuracy 0.97 / 0.95 / 0.93 against 0.98 / 0.98 / 0.92, lit share 0.233-0.238.
            return {
                "expectile": 1.0,
                "color_blind": True,
                "t_hue_plane": True,
                "voxel_net": "dense",
                "g_patch": 24,
                "batch_size": 32,
                "steps": 4000,
                "lr_schedule": "cosine",
            }
        dim = vector_dim(spec)
        if dim is None or preset == "tiny":
            return {}
        if preset == "full":  # the paper's own W2 run (300k steps: hours on a CPU, not measured)
            return {
                "hidden": (512, 512, 512),
                "batch_size": 1024,
                "steps": 300000,
                "lr_t": 5e-4,
                "lr_g": 5e-4,
                "beta2": 0.99,
                "expectile": 1.0,
                "expectile_weight": 0.5,
                "lr_schedule": "cosine",
            }
        high = dim >= 16
        return {
            "expectile_weight": 0.3,
            "hidden": (256, 256, 256),
            "batch_size": 128 if high else 256,
            "steps": 50000 if high else 34000,
            "lr_t": 1e-3,
            "lr_g": 1e-3,
            "lr_schedule": "cosine",
        }

    def __init__(self, config: ENOTConfig, info: PairInfo, device: torch.device) -> None:
        super().__init__(config, info, device)
        c = config
        voxel = info.kind == "voxel"
        self.cost_scale = float(info.x_dim) if voxel else 1.0  # voxels: per-element mean
        self.hue_plane = voxel and c.t_hue_plane  # a no-op on vectors, as in the saddle solvers
        if c.g_patch and not (voxel and c.voxel_net == "dense"):
            raise ConfigError(
                f"g_patch={c.g_patch} embeds voxel patches before a dense potential, but this run "
                f"has {'voxel_net=' + c.voxel_net if voxel else 'vectors'}; use --set g_patch=0"
                + (" or --set voxel_net=dense" if voxel else "")
            )

        def potential(patch: int = 0) -> nn.Module:
            try:
                return potential_net(
                    info,
                    c.g_base,
                    c.g_levels,
                    c.hidden,
                    c.g_norm,
                    c.activation,
                    c.g_context,
                    c.voxel_net,
                    patch,
                    c.color_blind,
                )
            except NetConfigError as err:  # the patch net's own rule (grid sides), with our key
                if not patch:
                    raise
                raise ConfigError(f"g_patch={patch}: {err} (--set g_patch=0)") from None

        if c.map == "gradient":
            # F = 0.5 ||x||^2 / s + net(x), so s grad F(x) = x + s grad net(x). On voxels s is
            # 12,288 and an untrained net's gradient, so scaled, moves each voxel by 1.9 (rms, data
            # in [-1, 1]): the net starts at zero, T at the identity. Vectors (s = 1) start within
            # 0.02-0.03 rms of the identity (W2 dims 2 and 32) and keep the init they were tuned with.
            def brenier(patch: int = 0) -> nn.Module:
                net = zero_output(potential(patch)) if voxel else potential(patch)
                return QuadraticPlus(net, -math.log(self.cost_scale), learn_scale=False)

            # g_patch sharpens g, the forward map's value potential; on f as well the map ran
            # away (3-5, seed 0: transport cost 0.87, fid 655).
            self.modules = {"f": brenier(), "g": brenier(c.g_patch)}
        elif voxel:
            self.modules = {
                "T": UNet3D(
                    info.x_shape[0],
                    base=c.t_base,
                    depth=c.t_depth,
                    residual=True,
                    hue_plane=c.t_hue_plane,
                ),
                "g": potential(c.g_patch),
            }
        else:
            self.modules = {
                "T": _VectorMap(info.x_dim, c.hidden, c.activation),
                "g": potential(c.g_patch),
            }
        self.modules = {name: net.to(device) for name, net in self.modules.items()}
        map_name = "f" if c.map == "gradient" else "T"
        self.map_name = self.eval_name = map_name  # the network trained, the one transporting
        if c.ema > 0:
            self.eval_name = f"{map_name}_ema"
            self.modules[self.eval_name] = ema_copy(self.modules[map_name])
        # fused: one kernel for all parameters, not a few per tensor (~3% of a W2 step on CPU)
        adam = partial(torch.optim.Adam, betas=(c.beta1, c.beta2), fused=True)
        self.optimizers = {
            map_name: adam(self.modules[map_name].parameters(), lr=c.lr_t),
            "g": adam(self.modules["g"].parameters(), lr=c.lr_g),
        }

    def cost(self, x: Tensor, y: Tensor) -> Tensor:
        """c(x, y) per pair: ||x - y||^2 (vectors) or its per-element mean (voxels)."""
        return (x - y).square().flatten(1).sum(dim=1) / self.cost_scale

    def _gradient_map(self, potential: nn.Module, x: Tensor, create_graph: bool) -> Tensor:
        """T(x) = grad F(x), F = 0.5 ||x||^2 / scale + net(x), times the cost's scale. With
        `t_hue_plane` the move T(x) - x is projected onto x's hue plane (UNet3D's `hue_plane`):
        T is then no longer a gradient, and its loss trains F within that class."""
        t = self.cost_scale * potential_gradient(potential, x, create_graph=create_graph)
        if self.hue_plane:
            t = x + hue_plane_project(t - x, x)
        return t

    def _dual_loss(self, g_y: Tensor, g_star: Tensor, c_xy: Tensor) -> tuple[Tensor, ...]:
        """The potential's loss: minus the dual value plus the expectile regulariser."""
        c = self.config
        d1 = (g_star - c_xy).detach() + g_y
        d2 = (g_y - c_xy).detach() + g_star
        regulariser = (
            expectile_loss(d1, c.expectile).mean() + expectile_loss(d2, c.expectile).mean()
        )
        dual = (g_y + g_star).mean()  # the Kantorovich dual value
        return -dual + c.expectile_weight * regulariser, dual, regulariser

    def _network_losses(self, x: Tensor, y: Tensor) -> tuple[Tensor, ...]:
        T, g = self.modules["T"], self.modules["g"]
        t = T(x)
        tb = t.detach()
        g_star = self.cost(x, tb) - g(tb)  # the c-transform of g at the map's point
        loss_g, dual, regulariser = self._dual_loss(g(y), g_star, self.cost(x, y))
        g.requires_grad_(False)  # T's loss sees g frozen
        loss_t = (self.cost(x, t) - g(t)).mean()
        g.requires_grad_(True)
        return loss_t, loss_g, dual, regulariser

    def _gradient_losses(
        self, x: Tensor, y: Tensor, mapper: nn.Module, valuer: nn.Module
    ) -> tuple[Tensor, ...]:
        """Correlation form: cost -<x, y>, the value potential read as -G (OTT-JAX's
        use_dot_product); `mapper`'s gradient maps x towards y."""
        s = self.cost_scale
        t = self._gradient_map(mapper, x, create_graph=True)
        tb = t.detach()
        value_t, value_y = valuer(torch.cat([tb, y])).split(len(x))  # one call: ~6% of a step
        g_star = value_t - batch_dot(x, tb) / s
        loss_g, dual, regulariser = self._dual_loss(-value_y, g_star, -batch_dot(x, y) / s)
        valuer.requires_grad_(False)  # the map's loss sees the value potential frozen
        loss_t = (valuer(t) - batch_dot(x, t) / s).mean()
        valuer.requires_grad_(True)
        return loss_t, loss_g, dual, regulariser

    def step(self, batches: Batches) -> dict[str, float]:
        c = self.config
        x, y = batches.x(), batches.y()
        if c.map == "network":
            losses = self._network_losses(x, y)
        elif c.bidirectional and self.steps_done % 2 == 1:  # the inverse direction's turn
            losses = self._gradient_losses(y, x, self.modules["g"], self.modules["f"])
        else:
            losses = self._gradient_losses(x, y, self.modules["f"], self.modules["g"])
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        sum(losses[:2]).backward()
        for opt in self.optimizers.values():
            opt.step()
        if c.ema > 0:
            ema_update(self.modules[self.eval_name], self.modules[self.map_name], c.ema)
        logs = torch.stack([loss.detach() for loss in losses]).tolist()
        return dict(zip(("loss_t", "loss_g", "dual", "expectile"), logs, strict=True))

    def transport(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        net = self.modules[self.eval_name]
        if self.config.map == "gradient":
            return self._gradient_map(net, x, create_graph=False)
        return net(x)
