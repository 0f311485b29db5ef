"""Solver registry: entry points of the group `otzoo.solvers`, loaded lazily, name the solvers.

A solver's id is written once: the entry point's name (`not = "otzoo_plugins.neural_ot:NeuralOT"`
in pyproject.toml), which the registry copies to `cls.id`. Built-in solvers are declared exactly
like a third party's, so the path a plugin author takes is the one otzoo itself uses every day.
A plugin that fails to import is a warning naming it; every other solver stays usable.
`register(cls, id)` adds a class without an entry point (tests, notebooks); a class under two
ids, or two classes under one id, is refused.
"""

from __future__ import annotations

import difflib
import fnmatch
import warnings
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

import torch

from otzoo.errors import ConfigError
from otzoo.frames import FramedSolver
from otzoo.solver import KNOWN_TAGS, PairInfo, Solver

if TYPE_CHECKING:
    from otzoo.config import RunConfig
    from otzoo.data import PairData

GROUP = "otzoo.solvers"

_SOLVERS: dict[str, type[Solver]] = {}
_FAILED: dict[str, str] = {}
_discovered = False


def register(cls: type[Solver], solver_id: str) -> type[Solver]:
    """Register a Solver subclass under a short id (sets `cls.id`)."""
    if not solver_id or not solver_id.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"solver id {solver_id!r} must be a short alphanumeric name")
    if not (isinstance(cls, type) and issubclass(cls, Solver)):
        raise ValueError(f"solver {solver_id!r}: {cls!r} is not a subclass of otzoo.solver.Solver")
    existing = _SOLVERS.get(solver_id)
    if existing is not None and existing is not cls:
        raise ValueError(
            f"solver id {solver_id!r} is already registered by "
            f"{existing.__module__}.{existing.__qualname__}"
        )
    other = next((sid for sid, c in _SOLVERS.items() if c is cls and sid != solver_id), None)
    if other is not None:
        raise ValueError(
            f"{cls.__module__}.{cls.__qualname__} is already registered as {other!r}; "
            f"declare it under one id only (not also {solver_id!r})"
        )
    unknown = set(cls.tags) - KNOWN_TAGS
    if unknown:
        raise ValueError(f"solver {solver_id!r} has unknown tags {sorted(unknown)}")
    cls.id = solver_id
    _SOLVERS[solver_id] = cls
    return cls


def _discover() -> None:
    """Import every entry point of the group once; failures become warnings."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for ep in entry_points(group=GROUP):
        if ep.name in _SOLVERS:
            continue
        try:
            register(ep.load(), ep.name)
        except Exception as err:  # a broken plugin must not take the others down
            _FAILED[ep.name] = f"{type(err).__name__}: {err}"
            warnings.warn(
                f"otzoo: solver plugin {ep.name!r} ({ep.value}) failed to load: {_FAILED[ep.name]}",
                stacklevel=2,
            )


def list_solvers(pattern: str = "*") -> list[str]:
    """Registered solver ids matching a glob pattern, sorted."""
    _discover()
    return sorted(s for s in _SOLVERS if fnmatch.fnmatch(s, pattern))


def failed_plugins() -> dict[str, str]:
    """Entry points that failed to load, with the reason."""
    _discover()
    return dict(_FAILED)


def get_solver(solver_id: str) -> type[Solver]:
    """The solver class for an id; an unknown id is a one-line error listing the known ones."""
    _discover()
    if solver_id in _SOLVERS:
        return _SOLVERS[solver_id]
    known = ", ".join(sorted(_SOLVERS)) or "none"
    if solver_id in _FAILED:
        raise ConfigError(
            f"solver {solver_id!r} is installed but failed to load ({_FAILED[solver_id]}); "
            f"fix or uninstall that plugin (working solvers: {known})"
        )
    close = difflib.get_close_matches(solver_id, list(_SOLVERS), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"unknown solver {solver_id!r}{hint} (known solvers: {known})")


def parse_solver_list(text: str) -> list[str]:
    """'not,otm' -> ['not', 'otm'], each checked against the registry, duplicates refused."""
    ids = [s.strip() for s in text.split(",") if s.strip()]
    if not ids:
        raise ConfigError("no solver given; pass a comma-separated list such as --solvers not,otm")
    if len(set(ids)) != len(ids):
        raise ConfigError(f"solver list {text!r} names a solver twice; list each once")
    for s in ids:
        get_solver(s)
    return ids


def check_fits(cls: type[Solver], info: PairInfo) -> None:
    """The class facts against the data, before a solver is built: its data kind, and equal
    source and target shapes for a solver whose cost compares x with T(x)."""
    if info.kind not in cls.tags:
        raise ConfigError(
            f"solver {cls.id!r} does not support {info.kind} data (its tags: "
            f"{', '.join(sorted(cls.tags))}); pick another solver or pair"
        )
    if cls.equal_shapes and info.x_shape != info.y_shape:
        latent = f", or for noise-D a latent of the target's side (noise-D:{info.y_shape[-1]})"
        raise ConfigError(
            f"solver {cls.id!r} compares x with T(x), which needs source and target of one shape "
            f"(got {info.x_shape} and {info.y_shape}); use otm for such pairs"
            f"{latent if info.kind == 'voxel' else ''}"
        )


def pair_info(data: PairData) -> PairInfo:
    return PairInfo(kind=data.kind, x_shape=tuple(data.x_shape), y_shape=tuple(data.y_shape))


def build_solver(run: RunConfig, data: PairData, device: torch.device) -> Solver:
    """The solver of `run` for `data` on `device` (the one place solvers are built)."""
    cls = get_solver(run.solver)
    info = pair_info(data)
    check_fits(cls, info)
    solver = cls(run.solver_config, info, device)
    if run.train.channels_last and info.kind == "voxel":
        for module in solver.modules.values():  # in place: optimizers keep their parameters
            module.to(memory_format=torch.channels_last_3d)
    if run.train.frame != "none":  # `resolve` refused it where it has no meaning
        return FramedSolver(solver, run.data.rotation)
    return solver
