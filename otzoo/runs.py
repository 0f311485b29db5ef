"""Run folders: the only code that creates one, reads or writes its `config.json`,
`metrics.json` and checkpoints, and decides whether a command starts a run or resumes one (the
warm start of `--init-from`, which loads another run's networks into a new one, is
otzoo.warm_start).

Layout of a run folder (docs/design.md): config.json (the resolved RunConfig), ckpt/step_*.pt
(atomic, `weights_only` loads), metrics.json (the final quick metrics), tb/ (TensorBoard).
Nothing here writes before the caller has passed every check: `plan` only reads, and the
folder appears with `start` (config.json), after data, solver and checkpoint were all accepted.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import re
import sys
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from otzoo.config import RunConfig
from otzoo.data import PairData, load_pair, parse_pair
from otzoo.errors import CheckpointError, ConfigError
from otzoo.registry import build_solver, get_solver
from otzoo.report import json_safe
from otzoo.runtime import atomic_write_bytes, atomic_write_json, resolve_device
from otzoo.solver import Solver

CONFIG = "config.json"
METRICS = "metrics.json"
CKPT_DIR = "ckpt"
CKPT_FORMAT = "otzoo-checkpoint-1"
_CKPT_RE = re.compile(r"^step_(\d+)\.pt$")


# ----------------------------------------------------------------------------- config.json


def read_config(run_dir: Path) -> RunConfig:
    """The RunConfig of a run folder, with one-line errors for every way it can be wrong."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise CheckpointError(
            f"{run_dir}: not a run folder (no {CONFIG}); pass the --out folder of `otzoo train`"
        )
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"{path}: unreadable ({type(err).__name__}); the run folder is damaged: start a "
            "new run in another --out"
        ) from None
    if not isinstance(raw, dict):
        raise CheckpointError(
            f"{path}: not a run config (a JSON object); the run folder is damaged"
        )
    solver_cls = get_solver(str(raw.get("solver", "?")))
    _migrate(raw, solver_cls)
    try:
        return RunConfig.from_dict(raw, solver_cls)
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from None


def _migrate(raw: dict[str, Any], solver_cls: type[Solver]) -> None:
    """Run folders written before the loop owned the lr schedule kept it in the solver config
    (`lr_decay_steps`, 0 = constant): move it to the train section. Keys a solver added with a
    new default get the value older runs were built with (`Solver.former_defaults`)."""
    solver_cfg, train_cfg = raw.get("solver_config"), raw.get("train")
    if isinstance(solver_cfg, dict):
        for key, value in solver_cls.former_defaults.items():
            solver_cfg.setdefault(key, value)
    if isinstance(solver_cfg, dict) and isinstance(train_cfg, dict):
        steps = solver_cfg.pop("lr_decay_steps", None)
        if steps:
            train_cfg.setdefault("lr_schedule", "cosine")
            train_cfg.setdefault("lr_decay_steps", steps)
        train_cfg.pop("cuda_batch_scale", None)


def write_config(run_dir: Path, run: RunConfig) -> None:
    """Create the run folder (and parents) with its config.json."""
    atomic_write_json(Path(run_dir) / CONFIG, run.to_dict())


def write_metrics(run_dir: Path, metrics: dict[str, float]) -> None:
    atomic_write_json(Path(run_dir) / METRICS, json_safe(metrics))


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """metrics.json of a run ({} when absent or unreadable: the run may not have finished)."""
    try:
        value = json.loads((Path(run_dir) / METRICS).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def recorded_train_seconds(run_dir: Path) -> float:
    """Training seconds from a run's metrics.json; NaN when absent or unreadable."""
    try:
        return float(read_metrics(run_dir)["train_seconds"])
    except (KeyError, TypeError, ValueError):
        return float("nan")


def recorded_selection(run_dir: Path) -> dict[str, float]:
    """`{"selected_step": N}` when the run ended with a map it chose on training data
    (`select_every`, otzoo.select), else {}: the tables say which step a row's map is from."""
    try:
        return {"selected_step": float(read_metrics(run_dir)["selected_step"])}
    except (KeyError, TypeError, ValueError):
        return {}


# ----------------------------------------------------------------------------- checkpoints


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files of a run, sorted by step (oldest first)."""
    ckpt_dir = Path(run_dir) / CKPT_DIR
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _CKPT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(run_dir: Path, step: int, payload: dict[str, Any], keep: int = 2) -> Path:
    """Atomically write ckpt/step_NNNNNNN.pt, then prune older ones beyond `keep`."""
    path = Path(run_dir) / CKPT_DIR / f"step_{step:07d}.pt"
    buf = io.BytesIO()
    torch.save({"format": CKPT_FORMAT, "step": step, **payload}, buf)
    atomic_write_bytes(path, buf.getvalue())
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with weights_only=True: a pickle carrying code is refused, never executed."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; check the run folder")
    try:
        with warnings.catch_warnings():  # torch's own note on refused pickles: ours says it
            warnings.simplefilter("ignore")
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
        raise CheckpointError(f"{path}: not an otzoo checkpoint; pass a file from a run's ckpt/")
    return obj


def restore(solver: Solver, ckpt: dict[str, Any], path: Path, networks_only: bool = False) -> None:
    """Load a checkpoint's state into `solver`, refusing one of another solver or shape. With
    `networks_only` (a warm start, `load_init`) only the networks: a new run's optimizers, step
    counter and extra state start fresh."""
    if ckpt.get("solver") != solver.id:
        raise CheckpointError(
            f"{path}: checkpoint of solver {ckpt.get('solver')!r}, not {solver.id!r}; "
            "pass the run folder it belongs to"
        )
    try:
        state = ckpt["state"]
        solver.load_state_dict({"modules": state["modules"]} if networks_only else state)
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        where, fix = str(path), "use it with the config it was written with"
        if networks_only:
            where = f"--init-from {path}"
            fix = "warm-start from a run of the same network settings (--preset, widths, ema)"
        raise CheckpointError(
            f"{where}: does not fit this run's networks ({_mismatch(str(err))}); {fix}"
        ) from None


def _mismatch(message: str) -> str:
    """The first difference torch reports, in a few words."""
    m = re.search(
        r"size mismatch for ([\w.]+): copying a param with shape torch\.Size\((\[[^\]]*\])\) "
        r"from checkpoint, the shape in current model is torch\.Size\((\[[^\]]*\])\)",
        message,
    )
    if m:
        return f"{m.group(1)} is {m.group(2)} in the checkpoint, {m.group(3)} in this run"
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    detail = next((ln for ln in lines if "key" in ln), lines[0] if lines else "unknown")
    return detail if len(detail) <= 120 else detail[:117].rsplit(" ", 1)[0] + " ..."


def warn(message: str) -> None:
    """One line on stderr: what happened and what otzoo did about it."""
    print(f"otzoo: warning: {message}", file=sys.stderr)


def load_latest(
    run_dir: Path,
    device: torch.device,
    set_aside: bool = False,
    warn: Callable[[str], None] = warn,
) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads; None when the run has none. A newer one that is
    corrupt or truncated (a crash mid-write on a filesystem without atomic rename, a disk
    error) is skipped with a one-line warning; with `set_aside` (resume) it is also renamed
    to *.corrupt, so the run continues from the one before. A hostile or foreign checkpoint
    still stops everything."""
    found = list_checkpoints(run_dir)
    for i, path in enumerate(reversed(found)):
        try:
            return path, load_checkpoint(path, map_location=device)
        except CheckpointError as err:
            if "corrupt or truncated" not in str(err):
                raise
            if i == len(found) - 1:
                raise CheckpointError(
                    f"{path}: checkpoint is corrupt or truncated and no older one loads; "
                    "start a new run (another --out)"
                ) from None
            if set_aside:
                aside = path.with_name(path.name + ".corrupt")
                path.replace(aside)
                warn(
                    f"{path} is corrupt or truncated; set aside as {aside.name}, using the one before"
                )
            else:
                warn(f"{path} is corrupt or truncated; using the checkpoint before it")
    return None


def as_reported(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint with the networks the run reports: those of the map it chose on training
    data (`select_every`, otzoo.select) when it chose one, else its own. Resume does not use
    this: it continues from the last state."""
    chosen = ckpt.get("chosen")
    if not chosen:
        return ckpt
    return {**ckpt, "state": {**ckpt["state"], "modules": chosen["modules"]}}


def load_run(run_dir: Path, device: str = "cpu") -> tuple[RunConfig, Solver, PairData]:
    """A run as its folder reports it: config, solver at its newest checkpoint (with the chosen
    map's networks, `as_reported`), and its data (for eval, render and compare --from; reads
    only)."""
    run = read_config(run_dir)
    run = replace(run, train=replace(run.train, device=device))
    dev = resolve_device(device)
    data = load_pair(run.pair, run.data, seed=run.seed)
    solver = build_solver(run, data, dev)
    found = load_latest(run_dir, dev)
    if found is None:
        raise CheckpointError(f"{run_dir}: run has no checkpoint yet; train it first")
    restore(solver, as_reported(found[1]), found[0])
    return run, solver, data


# ----------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class RunPlan:
    """What `otzoo train` will do in `out`: a new run, or continue one from a checkpoint."""

    out: Path
    run: RunConfig
    resume: bool  # continue from the newest checkpoint (False: start at step 0)


def plan_new(out: Path, run: RunConfig) -> RunPlan:
    """A new run in `out`: refused when `out` already holds a run that trained (a checkpoint);
    a folder whose run died before its first checkpoint is simply started again."""
    if list_checkpoints(out):
        raise CheckpointError(
            f"{out}: folder already holds a run; pass --resume to continue it or choose another --out"
        )
    return RunPlan(Path(out), run, resume=False)


def plan_resume(
    out: Path,
    solver: str | None = None,
    pair: str | None = None,
    steps: int | None = None,
    device: str | None = None,
) -> RunPlan:
    """Continue the run in `out` with its stored config; `--steps`/`--device` may change, the
    solver and pair may only be repeated. Without a checkpoint yet, it starts from step 0."""
    if not (Path(out) / CONFIG).is_file():
        raise ConfigError(f"{out}: no run to resume (no {CONFIG}); drop --resume or fix --out")
    run = read_config(out)
    for name, given, have in (("--solver", solver, run.solver), ("--pair", pair, run.pair)):
        if given is not None and (given if name == "--solver" else parse_pair(given).raw) != have:
            raise ConfigError(f"{name} {given} differs from the run in {out} ({have}); drop {name}")
    changes = {k: v for k, v in (("steps", steps), ("device", device)) if v is not None}
    run = replace(run, train=replace(run.train, **changes)) if changes else run
    return RunPlan(Path(out), run, resume=bool(list_checkpoints(out)))


def read_loss_curves(tb_dir: Path, solver_id: str) -> dict[str, list[tuple[int, float]]]:
    """The training losses a run logged to TensorBoard (tags `<solver>/<loss>`), by loss name;
    {} when there are none. Read back from the event files, so a resumed run's whole history
    (TensorBoard purges what a resume replays) is there."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not Path(tb_dir).is_dir():
        return {}
    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    tb_log = logging.getLogger("tensorboard")
    level = tb_log.level
    tb_log.setLevel(logging.ERROR)  # its note on the events a resume replaced: expected here
    try:
        acc.Reload()
    finally:
        tb_log.setLevel(level)
    prefix = f"{solver_id}/"
    return {
        tag[len(prefix) :]: [(e.step, e.value) for e in acc.Scalars(tag)]
        for tag in acc.Tags().get("scalars", [])
        if tag.startswith(prefix)
    }
