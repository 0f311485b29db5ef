"""User-facing errors: one line saying what is wrong and how to fix it, and the one helper that
refuses a config value out of its range.

The CLI prints `str(err)` of any `OtzooError` and exits non-zero without a traceback, so every
message must stand on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class OtzooError(Exception):
    """Base for errors caused by the user's input or environment, not by a bug in otzoo."""


class DataError(OtzooError):
    """A pair spec, data file or data option is invalid."""


class ConfigError(OtzooError):
    """An unknown or ill-typed configuration key, or an unknown solver or preset."""


class CheckpointError(OtzooError):
    """A checkpoint is missing, corrupt, unsafe, or belongs to another run."""


class DivergenceError(OtzooError):
    """Training produced a NaN or Inf; the last good checkpoint is left intact."""


class DeviceError(OtzooError):
    """The requested device is not available."""


def check_value(key: str, value: Any, ok: Callable[[Any], bool], allowed: str) -> None:
    """Refuse a config value outside its range with one line: key, value, what is allowed, and
    how to set it (the same words whether it came from --set, an option or a preset)."""
    try:
        good = bool(ok(value))
    except TypeError:
        good = False
    if not good:
        raise ConfigError(f"{key}={value!r} is out of range: use {allowed} (--set {key}=...)")
