"""User-facing errors: one line saying what is wrong and how to fix it.

The CLI prints `str(err)` of any `OtzooError` and exits non-zero without a traceback, so every
message must stand on its own.
"""


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
