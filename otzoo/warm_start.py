"""The warm start of `--init-from RUN_DIR` (transfer: unrotated -> rotated -> point cloud): a
new run begins from the networks another run reports. Every way the source can be wrong is one
line naming the option, raised before anything is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from otzoo.config import RunConfig
from otzoo.errors import CheckpointError, ConfigError
from otzoo.runs import CONFIG, as_reported, load_latest, read_config, restore
from otzoo.solver import Solver


def init_run_config(run_dir: Path) -> RunConfig:
    """The config of a warm-start source (`--init-from DIR`), every way it can be wrong one line
    naming the option (a compare output gets its per-solver run folders named)."""
    run_dir = Path(run_dir)
    where = f"--init-from {run_dir}"
    if not run_dir.is_dir():
        raise CheckpointError(
            f"{where}: no such folder; pass the --out folder of a finished `otzoo train` run"
        )
    inner = run_dir / "runs"
    if not (run_dir / CONFIG).is_file() and inner.is_dir():
        runs = sorted(str(p) for p in inner.iterdir() if (p / CONFIG).is_file())
        raise CheckpointError(
            f"{where}: a compare output, not a run folder; pass one of its per-solver runs "
            f"({', '.join(runs) or f'{inner}/<solver>'})"
        )
    try:
        return read_config(run_dir)
    except (CheckpointError, ConfigError) as err:
        message = str(err)
        message = message if message.startswith(str(run_dir)) else f"{run_dir}: {message}"
        raise CheckpointError(f"--init-from {message}") from None


def load_init(run_dir: Path, solver: Solver) -> int:
    """Warm start (`--init-from`): load into `solver` the networks of the run in `run_dir` as
    its newest checkpoint reports them (`as_reported`: the chosen map's, EMA copies included).
    Optimizers, `steps_done` and extra state stay fresh: it is a new run. Data options may
    differ; the solver and every tensor shape (samples and networks) must match, else one line
    names the difference. Reads only (checks before anything is written); returns the step of
    the checkpoint loaded."""
    run_dir = Path(run_dir)
    where = f"--init-from {run_dir}"
    init = init_run_config(run_dir)
    if init.solver != solver.id:
        raise CheckpointError(
            f"{where}: a run of solver {init.solver!r}, not {solver.id!r}; warm-start from a run "
            f"of {solver.id!r}"
        )
    if not solver.modules:
        raise CheckpointError(
            f"{where}: solver {solver.id!r} has no networks to warm-start (it fits its map from "
            "the data); drop --init-from"
        )
    found = load_latest(run_dir, solver.device)
    if found is None:
        raise CheckpointError(
            f"{where}: run has no checkpoint yet; train it first, or pass a run that trained"
        )
    path, ckpt = found
    ours = (tuple(solver.info.x_shape), tuple(solver.info.y_shape))
    theirs = _sample_shapes(ckpt)
    if theirs is not None and theirs != ours:
        raise CheckpointError(
            f"{where}: it was trained on samples {_shapes(theirs)}, this run has {_shapes(ours)}; "
            "warm-start needs the same shapes (use that run's --grid and --coloring)"
        )
    restore(solver, as_reported(ckpt), path, networks_only=True)
    solver.warm_started = True
    return int(ckpt.get("step", 0))


def _sample_shapes(ckpt: dict[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The (source, target) sample shapes a checkpoint was trained on; None for checkpoints
    written before train.py recorded them (their networks are still checked tensor by tensor)."""
    x, y = ckpt.get("x_shape"), ckpt.get("y_shape")
    if not isinstance(x, list | tuple) or not isinstance(y, list | tuple):
        return None
    return tuple(int(v) for v in x), tuple(int(v) for v in y)


def _shapes(shapes: tuple[tuple[int, ...], ...]) -> str:
    return " -> ".join("x".join(map(str, s)) for s in shapes)
