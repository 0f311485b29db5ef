"""The solver protocol: the only thing the trainer and the harness know about a solver.

A solver is a class with a frozen dataclass `Config` (whose defaults run), a few class-level
facts (`summary`, `tags`, `presets`, `equal_shapes`, `amp_safe`), and five methods: `__init__`,
`step`, `transport`, `state_dict`, `load_state_dict`. Core code never branches on solver types;
what differs between solvers lives in their module under `plugins/` (or in a third party's
package). The training loop (otzoo.loop) owns the step count and the learning-rate schedule,
so a solver keeps no counters of its own: `steps_done` is there to read (docs/design.md).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import nn

from otzoo.errors import check_value

if TYPE_CHECKING:
    from otzoo.data.pairs import DataConfig
    from otzoo.data.spec import PairSpec


# Tags a solver may declare; the harness uses them to choose data and metrics.
KNOWN_TAGS = frozenset({"voxel", "vector", "stochastic", "neural", "discrete"})


@dataclass(frozen=True)
class PairInfo:
    """What a solver needs to build its networks: the kind of data and per-sample shapes."""

    kind: str  # "voxel" (x is [C, D, H, W]) or "vector" (x is [d])
    x_shape: tuple[int, ...]
    y_shape: tuple[int, ...]

    @property
    def x_dim(self) -> int:
        return int(torch.tensor(self.x_shape).prod())

    @property
    def y_dim(self) -> int:
        return int(torch.tensor(self.y_shape).prod())


class Batches(Protocol):
    """Fresh random training batches, drawn by the trainer (so sampling is seeded and resumable)."""

    batch_size: int
    x_all: torch.Tensor  # the whole training source set (for discrete solvers)
    y_all: torch.Tensor

    def x(self, n: int | None = None) -> torch.Tensor: ...

    def y(self, n: int | None = None) -> torch.Tensor: ...

    def state(self) -> torch.Tensor:
        """The draw generator's state (checkpointed by the trainer; a solver that keeps draws
        across steps saves it to re-draw them after a resume)."""
        ...

    def set_state(self, state: torch.Tensor) -> None: ...


@dataclass(frozen=True)
class SolverConfig:
    """Base for solver configs; subclasses add their own fields with defaults that run.

    Checked for every solver: floats are finite, learning rates (`lr`, `lr_*`, `*_lr`) are
    positive, `ema` is in [0, 1), integers counting iterations, widths or levels (`*_iters`,
    `*_base`, `*_levels`, `*_depth`, `z_size`) are >= 1. A subclass adds its own ranges in a
    `__post_init__` that calls this one.
    """

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value, name = getattr(self, f.name), f.name
            if isinstance(value, float) and not isinstance(value, bool):
                check_value(name, value, math.isfinite, "a finite number")
                if name == "lr" or name.startswith("lr_") or name.endswith("_lr"):
                    check_value(name, value, lambda v: v > 0, "a learning rate > 0")
            if name == "ema":
                check_value(name, value, lambda v: 0 <= v < 1, "a decay in [0, 1) (0: no EMA)")
            counts = ("_iters", "_base", "_levels", "_depth")
            if isinstance(value, int) and (name.endswith(counts) or name == "z_size"):
                check_value(name, value, lambda v: v >= 1, "an integer >= 1")


class Solver(ABC):
    """Base class holding the shared plumbing: modules, optimizers and their state.

    Subclasses fill `self.modules` and `self.optimizers` in `__init__`; `state_dict` and
    `load_state_dict` then work without further code. Anything else worth saving goes in
    `extra_state` / `load_extra_state` (plain tensors, numbers and strings only, so checkpoints
    load with `weights_only=True`).
    """

    id: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    tags: ClassVar[frozenset[str]] = frozenset()
    Config: ClassVar[type[SolverConfig]] = SolverConfig
    # Overrides per preset ("tiny", "quick", "full"). Keys may name fields of the solver's Config
    # or of the shared train/data configs (e.g. a smaller batch_size for a heavy solver).
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    # False for solvers whose losses need fp32 (e.g. gradients of convex potentials).
    amp_safe: ClassVar[bool] = True
    # True for solvers whose cost compares x with T(x) (||x - T(x)||^2): the core refuses pairs
    # whose source and target shapes differ before building one (OTM maps latents: False).
    equal_shapes: ClassVar[bool] = True
    # Keys whose default changed, with the value a run saved before the key existed was built
    # with: reading an older run folder's config fills them in, so its checkpoint still fits.
    former_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: SolverConfig, info: PairInfo, device: torch.device) -> None:
        self.config = config
        self.info = info
        self.device = device
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.steps_done = 0  # outer steps taken; advanced by otzoo.loop.run_steps only
        # True when the networks came from another run (`--init-from`): a solver that prepares
        # fresh networks in its first step (e.g. an identity pre-training at steps_done == 0)
        # skips that, or it would undo the warm start.
        self.warm_started = False

    # -- the protocol -------------------------------------------------------------------------
    @abstractmethod
    def step(self, batches: Batches) -> dict[str, float]:
        """One outer iteration (including any inner loop); returns losses as Python floats."""

    @abstractmethod
    def transport(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Map a batch of source samples; stochastic solvers draw `z` themselves when None."""

    @classmethod
    def pair_presets(cls, spec: PairSpec, preset: str, data: DataConfig) -> dict[str, Any]:
        """Overrides for one kind of pair on top of `presets[preset]` (the user's --set still
        wins): lets a solver tuned on voxels carry its own settings for, e.g., vectors of a
        given dimension, or rotated or point-cloud digits. `data` is the run's data config as
        the other layers make it (the user's --rotation and --style included), since a recipe
        measured on one data variant may hurt on another. Same keys as `presets`."""
        del spec, preset, data
        return {}

    # -- shared plumbing ----------------------------------------------------------------------
    @classmethod
    def make_config(cls, overrides: dict[str, Any] | None = None) -> SolverConfig:
        """The default config with the keys of `overrides` that belong to it replaced."""
        names = {f.name for f in dataclasses.fields(cls.Config)}
        own = {k: v for k, v in (overrides or {}).items() if k in names}
        return cls.Config(**own)

    def diagnostics(self, x: torch.Tensor) -> dict[str, float]:
        """Facts about the map on inputs x that the harness reports beside the metrics (e.g. an
        ODE solver's function evaluations); none by default."""
        del x
        return {}

    def train_mode(self, on: bool = True) -> None:
        for m in self.modules.values():
            m.train(on)

    def state_dict(self) -> dict[str, Any]:
        return {
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "steps_done": self.steps_done,
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.modules) - set(state.get("modules", {}))
        if missing:
            raise KeyError(f"state has no entry for modules {sorted(missing)}")
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers.items():
            if k in state.get("optimizers", {}):
                o.load_state_dict(state["optimizers"][k])
        self.steps_done = int(state.get("steps_done", 0))
        self.load_extra_state(state.get("extra", {}))

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        del state

    def parameters_count(self) -> dict[str, int]:
        return {k: sum(p.numel() for p in m.parameters()) for k, m in self.modules.items()}
