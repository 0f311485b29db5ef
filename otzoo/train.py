"""`otzoo train`: one solver, one pair, one run folder, driven by the one loop (otzoo.loop).

Everything that can refuse the command (device, output path, the folder's state, data, solver,
checkpoint, the run a warm start loads) is checked before anything is written; then this module
adds what a run needs around the loop: TensorBoard scalars and pictures, atomic checkpoints,
SIGINT/SIGTERM handled at a step boundary, a lock against a second writer, and the final
metrics. Under `torchrun`
every rank trains on its own batches with gradients averaged (otzoo.distributed); rank 0 writes.
"""

from __future__ import annotations

import math
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from otzoo import distributed
from otzoo.batches import BatchSampler, for_pair
from otzoo.config import RunConfig
from otzoo.data import PairData, load_pair
from otzoo.errors import CheckpointError, ConfigError, DivergenceError
from otzoo.evaluate import apply_map, evaluate_solver
from otzoo.judge import Judge
from otzoo.loop import Diverged, StepInfo, run_steps
from otzoo.progress import StepProgress
from otzoo.registry import build_solver
from otzoo.runs import (
    CONFIG,
    list_checkpoints,
    load_latest,
    plan_new,
    read_loss_curves,
    restore,
    save_checkpoint,
    write_config,
    write_metrics,
)
from otzoo.runtime import (
    check_out_path,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
)
from otzoo.select import MapSelector
from otzoo.solver import Solver
from otzoo.viz import render_grid, save_loss_png, views_for
from otzoo.warm_start import load_init

N_PICTURE = 6  # test inputs shown beside their maps in TensorBoard
LOCK = ".lock"


@dataclass(frozen=True)
class TrainResult:
    out: Path
    steps: int
    metrics: dict[str, float]
    solver: Solver
    interrupted: int = 0  # the signal that stopped the run (SIGINT, SIGTERM); 0: it finished


def amp_dtype(mode: str, device: torch.device, solver: Solver | type[Solver]) -> torch.dtype | None:
    """bf16 autocast: 'auto' turns it on for CUDA, 'bf16' on any device (on CPU it rarely
    pays), 'off' never; a solver whose losses need fp32 (`amp_safe = False`: double backward
    through convex potentials, float64 fits) always runs in fp32."""
    if mode not in ("auto", "bf16", "off"):
        raise ConfigError(f"--set amp={mode}: choose auto, bf16 or off")
    wanted = mode == "bf16" or (mode == "auto" and device.type == "cuda")
    return torch.bfloat16 if wanted and solver.amp_safe else None


class StopFlag:
    """SIGINT (Ctrl-C) and SIGTERM (what a cluster scheduler sends) set a flag; the loop stops
    at the next step boundary and the run writes a checkpoint. A second signal stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.hit = 0  # the signal number
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.hit:
            raise KeyboardInterrupt
        self.hit = signum

    def __exit__(self, *exc: object) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """One writer per run folder: a lock file holding the writer's pid. A second `train` on
    the same folder is refused; a lock left by a process that no longer exists is taken over."""
    path = out / LOCK
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or "0")
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise CheckpointError(
                    f"{out}: another otzoo process (pid {pid}) is writing this run; wait for it "
                    f"to end, or stop it (if it is gone, delete {path})"
                ) from None
            path.unlink(missing_ok=True)  # stale: its process is gone
    with os.fdopen(fd, "w") as fh:
        fh.write(str(os.getpid()))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _params_finite(solver: Solver) -> bool:
    return all(
        bool(torch.isfinite(p).all()) for m in solver.modules.values() for p in m.parameters()
    )


def train(
    run: RunConfig,
    out: Path,
    resume: bool = False,
    show_progress: bool = True,
    tb_dir: Path | None = None,
    data: PairData | None = None,
    judge: Judge | None = None,
) -> TrainResult:
    """Train `run` into folder `out` (config.json, ckpt/, tb/, metrics.json); with `resume`,
    continue from the folder's newest loadable checkpoint (or from step 0 if it has none).
    With `run.init_from` (a warm start) a run that starts at step 0 takes that run's final
    networks; a resumed one takes its own checkpoint, never the init again. With a `judge`
    (compare passes its own), the metrics logged every `eval_every` steps include the judged
    ones (target accuracy, fid)."""
    out = Path(out)
    device = resolve_device(run.train.device)
    check_out_path(out)
    rank, world_size = distributed.world()
    if world_size > 1 and device.type == "cuda":
        device = distributed.local_cuda_device()
    if resume and not (out / CONFIG).is_file():
        raise ConfigError(f"{out}: no run to resume (no {CONFIG}); drop --resume or fix --out")
    if not resume:
        plan_new(out, run)
    parallel = distributed.init(device)
    main = rank == 0
    seed_everything(run.seed)
    data = data if data is not None else load_pair(run.pair, run.data, seed=run.seed)
    solver = build_solver(run, data, device)
    if parallel:
        distributed.share_weights(solver)
        seed_everything(run.seed + 7919 * rank)  # each rank draws its own noise
    batches = for_pair(data, run.train.batch_size, seed=run.seed + 1 + 7919 * rank, device=device)
    amp = amp_dtype(run.train.amp, device, solver)
    start_seconds, chosen = 0.0, None
    found = load_latest(out, device, set_aside=main) if resume else None
    if found is not None:
        path, ckpt = found
        restore(solver, ckpt, path)
        start_seconds = float(ckpt.get("train_seconds", 0.0))
        per_rank = ckpt.get("batch_rng_ranks", [ckpt["batch_rng"]])
        batches.set_state(per_rank[rank] if rank < len(per_rank) else per_rank[0])
        set_rng_state(ckpt["rng"])
        chosen = ckpt.get("chosen")
    elif run.init_from is not None:  # a new run, or one resumed before its first checkpoint
        run = replace(run, init_step=load_init(Path(run.init_from), solver))
    # -- every check passed: from here on the run writes ------------------------------------
    ctx = _Context(run, out, solver, data, batches, amp, parallel, judge, chosen)
    if not main:
        distributed.barrier()
        return _loop(ctx, start_seconds, False, None)
    write_config(out, run)
    with run_lock(out):
        distributed.barrier()
        return _loop(ctx, start_seconds, show_progress, tb_dir)


@dataclass(frozen=True)
class _Context:
    """What the loop of one run works with, once every check has passed."""

    run: RunConfig
    out: Path
    solver: Solver
    data: PairData
    batches: BatchSampler
    amp: torch.dtype | None
    parallel: bool
    judge: Judge | None
    chosen: dict[str, Any] | None  # a resumed run's map chosen so far (otzoo.select)


def _loop(ctx: _Context, seconds: float, show_progress: bool, tb_dir: Path | None) -> TrainResult:
    """The loop with this run's logging, pictures and checkpoints around it."""
    from torch.utils.tensorboard import SummaryWriter

    run, out, solver, data, batches = ctx.run, ctx.out, ctx.solver, ctx.data, ctx.batches
    amp, parallel = ctx.amp, ctx.parallel
    cfg = run.train
    main = distributed.world()[0] == 0
    start = solver.steps_done
    writer = SummaryWriter(str(tb_dir or out / "tb"), purge_step=start or None) if main else None
    fixed = data.x_test[:N_PICTURE].to(solver.device)
    spent = seconds
    selector = None
    if cfg.select_every and main and solver.modules:
        selector = MapSelector(data, cfg.select_samples, run.seed)
        selector.load_state(ctx.chosen)

    def checkpoint(step: int) -> None:
        states = [batches.state()]
        if parallel:
            states = distributed.gather(states[0])
        if not main:
            return
        if not _params_finite(solver):
            raise Diverged(step, {"parameters": math.nan})
        payload = {
            "solver": run.solver,
            "config": run.to_dict(),
            "state": solver.state_dict(),
            "rng": rng_state(),
            "batch_rng": states[0],
            "batch_rng_ranks": states,
            "train_seconds": spent,
            "chosen": selector.state() if selector is not None else None,
            "x_shape": list(solver.info.x_shape),  # what a warm start (`--init-from`) checks
            "y_shape": list(solver.info.y_shape),
        }
        save_checkpoint(out, step, payload, keep=cfg.keep_checkpoints)

    def pictures(step: int) -> None:
        if data.kind != "voxel" or writer is None:
            return
        rows = [fixed.cpu(), apply_map(solver, fixed).cpu()]
        grid = render_grid(
            rows, ["input", "map"], views=views_for(run.data.rotation, run.data.style)
        )
        writer.add_image("maps", grid, step, dataformats="HWC")

    def log_metrics(step: int) -> dict[str, float]:
        metrics = evaluate_solver(solver, data, ctx.judge, run.seed, max_samples=cfg.eval_samples)
        if writer is not None:
            for k, v in metrics.items():
                if math.isfinite(v):
                    writer.add_scalar(f"metrics/{k}", v, step)
        return metrics

    def on_step(info: StepInfo) -> None:
        nonlocal spent
        step, losses = info.step, info.losses
        spent = seconds + info.seconds
        if writer is not None:
            if step % cfg.log_every == 0 or step == cfg.steps:
                for k, v in losses.items():
                    writer.add_scalar(f"{solver.id}/{k}", v, step)
            if cfg.eval_every and step % cfg.eval_every == 0 and step != cfg.steps:
                log_metrics(step)
            if cfg.image_every and step % cfg.image_every == 0:
                pictures(step)
        if selector is not None and (step % cfg.select_every == 0 or step == cfg.steps):
            value = selector.offer(solver)  # before the checkpoint of this step, which keeps it
            if writer is not None:
                writer.add_scalar("select/energy_distance", value, step)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            checkpoint(step)
        bar.update(step, losses)

    try:
        with (
            StopFlag() as stop,
            StepProgress(
                f"{run.solver} {run.pair}", cfg.steps, start, enabled=show_progress and main
            ) as bar,
        ):
            if start == 0:
                pictures(0)
                if selector is not None:  # the untrained map competes too
                    selector.offer(solver)
            try:
                result = run_steps(
                    solver,
                    batches,
                    cfg.steps,
                    amp=amp,
                    lr_decay_steps=cfg.decay_steps(),
                    on_step=on_step,
                    should_stop=lambda: bool(stop.hit),
                )
            except Diverged as err:
                ckpts = list_checkpoints(out)
                kept = (
                    f"last good checkpoint {ckpts[-1]}"
                    if ckpts
                    else "no checkpoint was written yet"
                )
                raise DivergenceError(
                    f"{err}; {kept}; lower the learning rates (--set lr_...=) or use a smaller preset"
                ) from None
            spent = seconds + result.seconds
            if result.stopped == "stopped":
                checkpoint(solver.steps_done)
                return TrainResult(out, solver.steps_done, {}, solver, interrupted=stop.hit)
        metrics: dict[str, float] = {}
        if main:
            steps = solver.steps_done
            picked = selector.use_chosen(solver) if selector is not None else None
            metrics = log_metrics(steps)
            if picked is not None:
                metrics["selected_step"] = float(picked)
            metrics.update(
                steps=float(steps), train_seconds=spent, seconds_per_step=spent / max(steps, 1)
            )
            write_metrics(out, metrics)
            if writer is not None:
                writer.flush()
                curves = read_loss_curves(Path(writer.log_dir), solver.id)
                if curves:
                    title = f"{run.solver} {run.pair}: training losses"
                    save_loss_png({run.solver: curves}, out / "loss.png", title)
        return TrainResult(out, solver.steps_done, metrics, solver)
    finally:
        if writer is not None:
            writer.close()
