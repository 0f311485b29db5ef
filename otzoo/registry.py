"""Solver registry: a decorator fills a dict; entry points (group `otzoo.solvers`) fill it lazily.

Built-in solvers are declared in pyproject.toml exactly like a third party's, so the path a
plugin author takes is the one otzoo itself uses every day. A plugin that fails to import is a
warning naming it; every other solver stays usable.
"""

from __future__ import annotations

import difflib
import fnmatch
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points

from otzoo.errors import ConfigError
from otzoo.solver import KNOWN_TAGS, Solver

GROUP = "otzoo.solvers"

_SOLVERS: dict[str, type[Solver]] = {}
_FAILED: dict[str, str] = {}
_discovered = False


def register_solver(solver_id: str) -> Callable[[type[Solver]], type[Solver]]:
    """Class decorator: register a Solver subclass under a short id (e.g. "otm")."""

    def wrap(cls: type[Solver]) -> type[Solver]:
        if not solver_id or not solver_id.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"solver id {solver_id!r} must be a short alphanumeric name")
        existing = _SOLVERS.get(solver_id)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(
                f"solver id {solver_id!r} is already registered by "
                f"{existing.__module__}.{existing.__qualname__}"
            )
        unknown = set(cls.tags) - KNOWN_TAGS
        if unknown:
            raise ValueError(f"solver {solver_id!r} has unknown tags {sorted(unknown)}")
        cls.id = solver_id
        _SOLVERS[solver_id] = cls
        return cls

    return wrap


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
            obj = ep.load()
        except Exception as err:  # a broken plugin must not take the others down
            _FAILED[ep.name] = f"{type(err).__name__}: {err}"
            warnings.warn(
                f"otzoo: solver plugin {ep.name!r} ({ep.value}) failed to import: {_FAILED[ep.name]}",
                stacklevel=2,
            )
            continue
        if ep.name not in _SOLVERS and isinstance(obj, type) and issubclass(obj, Solver):
            register_solver(ep.name)(obj)


def list_solvers(pattern: str = "*") -> list[str]:
    """Registered solver ids matching a glob pattern, sorted."""
    _discover()
    return sorted(s for s in _SOLVERS if fnmatch.fnmatch(s, pattern))


def failed_plugins() -> dict[str, str]:
    """Entry points that failed to import, with the reason."""
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
            f"solver {solver_id!r} is installed but failed to import ({_FAILED[solver_id]}); "
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
