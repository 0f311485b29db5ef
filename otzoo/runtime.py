"""Device choice, seeding, atomic files and safe checkpoints: the parts of a run that must never
lose work or execute untrusted data."""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from otzoo.errors import CheckpointError, DeviceError, OtzooError

CKPT_FORMAT = "otzoo-checkpoint-1"
_CKPT_RE = re.compile(r"^step_(\d+)\.pt$")


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
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_checkpoint(ckpt_dir: Path, step: int, payload: dict[str, Any], keep: int = 2) -> Path:
    """Atomically write ckpt_dir/step_NNNNNNN.pt, then prune older ones beyond `keep`."""
    path = ckpt_dir / f"step_{step:07d}.pt"
    buf = io.BytesIO()
    torch.save({"format": CKPT_FORMAT, "step": step, **payload}, buf)
    atomic_write_bytes(path, buf.getvalue())
    for old in list_checkpoints(ckpt_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Checkpoint files sorted by step (oldest first)."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _CKPT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with weights_only=True: a pickle carrying code is refused, never executed."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; check the run folder")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path}: refused to load: it holds Python objects other than tensors (a pickle that "
            "could run code); only load checkpoints written by otzoo"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"{path}: checkpoint is corrupt or truncated ({type(err).__name__}); "
            "delete it to resume from the previous one, or start a new run"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != CKPT_FORMAT:
        raise CheckpointError(
            f"{path}: not an otzoo checkpoint; pass a file from a run's ckpt/ folder"
        )
    return obj


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    found = list_checkpoints(ckpt_dir)
    return found[-1] if found else None


def check_writable(folder: Path) -> None:
    """Fail early (before any work) when the output folder cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".otzoo-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OtzooError(
            f"{folder}: output folder is not writable ({err.strerror}); pass --out to a writable folder"
        ) from None
