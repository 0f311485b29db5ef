"""Device choice, seeding, atomic files and output paths checked before any work: the parts of
every command that must never lose work (run folders and checkpoints: otzoo.runs)."""

from __future__ import annotations

import json
import os
import platform
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from otzoo.errors import ConfigError, DeviceError, OtzooError


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without it is a clear error."""
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {name}: CUDA is not available on this machine "
                "(torch.cuda.is_available() is False); use --device cpu or --device auto"
            )
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s); "
                "pick an index below that"
            )
        return dev
    raise DeviceError(f"--device {name}: unknown device; use auto, cpu, cuda or cuda:N")


def available_memory_bytes() -> int | None:
    """Memory the OS says a new allocation can use (Linux MemAvailable), or None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Copy a CPU tensor to `device`; to CUDA through pinned memory without blocking the host
    (one path for CPU and GPU: on CPU this is a plain `.to`)."""
    device = torch.device(device)
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Global RNG states as tensors (checkpoint-safe), so a resumed run draws the same noise."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), 0o666 & ~_umask())  # mkstemp's 0600 -> the user's umask
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def check_out_path(path: Path, what: str = "--out", kind: str = "folder") -> None:
    """Fail before any work when `path` cannot become a writable folder (or file): it exists as
    the other kind, or its nearest existing ancestor is not a writable folder. Creates nothing,
    so a refused command leaves nothing behind."""
    path = Path(path)
    want_dir = kind == "folder"
    if path.exists() and path.is_dir() != want_dir:
        other = "a folder" if path.is_dir() else "a file"
        raise OtzooError(f"{what} {path}: is {other}, expected a {kind}; pass a {kind} path")
    probe = path if path.exists() and want_dir else path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OtzooError(
            f"{what} {path}: not writable ({probe} is a file, not a folder); pass {what} to a "
            "writable folder"
        )
    try:  # really try (permission bits lie for root and for special file systems)
        os.rmdir(tempfile.mkdtemp(prefix=".otzoo-probe-", dir=probe))
    except OSError as err:
        raise OtzooError(
            f"{what} {path}: not writable ({err.strerror} in {probe}); pass {what} to a "
            "writable folder"
        ) from None


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch intra-op threads for one command (0: leave torch's default), restored afterwards."""
    if n < 0:
        raise ConfigError(f"--threads {n}: use a number of CPU threads >= 1, or 0 for one per core")
    before = torch.get_num_threads()
    torch.set_num_threads(n or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def deterministic_kernels() -> Iterator[None]:
    """torch deterministic algorithms (warn-only where none exists), restored afterwards."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[2:]


@contextmanager
def seeded_rng(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """torch's global RNG seeded with `seed` inside a forked state: code that draws noise while
    it measures a map (evaluation, map selection) gets the same draws every time, and the
    caller's stream (a run's training noise) is left exactly where it was."""
    dev = torch.device(device) if device is not None else None
    cuda = [dev.index or 0] if dev is not None and dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


# The widest vector / matrix units first: CPUs of one model name differ in these (an AMD EPYC
# with AVX-512 and one without ran the same W2 cell in 1.3x the CPU time), and torch's kernels
# round differently on each, so a row is tied to them.
VECTOR_UNITS = ("amx_tile", "avx512f", "avx2")


def machine_summary(device: str = "cpu") -> str:
    """One line: CPU model and widest vector unit, cores, torch threads and version, device."""
    model, units = platform.processor() or platform.machine(), "?"
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        info = []
    for line in info:
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            units = next((u for u in VECTOR_UNITS if u in flags), "no avx2")
            break
    return (
        f"{model} ({units}), {os.cpu_count()} logical cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, device {device}"
    )
