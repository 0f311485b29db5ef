"""One training loop for every solver: device, seeding, batches, progress, TensorBoard,
atomic checkpoints, resume, and a guard that stops on NaN/Inf with the last good checkpoint kept.

The loop speaks only the Solver protocol (`step`, `transport`, `state_dict`), so a new solver
gets all of this for free.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from otzoo import distributed
from otzoo.config import RunConfig
from otzoo.data import PairData, load_pair
from otzoo.data.vectors import FreshBatches, VectorPairData
from otzoo.errors import CheckpointError, ConfigError, DivergenceError
from otzoo.registry import get_solver
from otzoo.runtime import (
    atomic_write_json,
    check_writable,
    latest_checkpoint,
    load_checkpoint,
    resolve_device,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    to_device,
)
from otzoo.solver import PairInfo, Solver

N_PICTURE = 6  # test inputs shown beside their maps in TensorBoard


class TensorBatches:
    """Random batches from tensors kept on the device, drawn with a seeded generator whose
    state is checkpointed (so a resumed run sees the same batches as an uninterrupted one)."""

    def __init__(self, x_all: torch.Tensor, y_all: torch.Tensor, batch_size: int, seed: int):
        self.x_all, self.y_all, self.batch_size = x_all, y_all, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def _draw(self, data: torch.Tensor, n: int | None) -> torch.Tensor:
        idx = torch.randint(len(data), (n or self.batch_size,), generator=self.generator)
        return data[idx.to(data.device)]

    def x(self, n: int | None = None) -> torch.Tensor:
        return self._draw(self.x_all, n)

    def y(self, n: int | None = None) -> torch.Tensor:
        return self._draw(self.y_all, n)


@dataclass(frozen=True)
class TrainResult:
    out: Path
    steps: int
    metrics: dict[str, float]
    solver: Solver


def pair_info(data: PairData) -> PairInfo:
    return PairInfo(kind=data.kind, x_shape=tuple(data.x_shape), y_shape=tuple(data.y_shape))


def build_solver(run: RunConfig, data: PairData, device: torch.device) -> Solver:
    cls = get_solver(run.solver)
    if data.kind not in cls.tags:
        raise ConfigError(
            f"solver {run.solver!r} does not support {data.kind} data (its tags: "
            f"{', '.join(sorted(cls.tags))}); pick another solver or pair"
        )
    return cls(run.solver_config, pair_info(data), device)


@torch.no_grad()
def map_in_batches(solver: Solver, x: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Apply `solver.transport` in eval mode without gradients, batch by batch."""
    solver.train_mode(False)
    try:
        return torch.cat(
            [solver.transport(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        )
    finally:
        solver.train_mode(True)


def quick_metrics(solver: Solver, data: PairData, n: int) -> dict[str, float]:
    """Transport cost and color preservation on the first n test samples (DESIGN §5)."""
    from otzoo.metrics import color_preservation, transport_cost

    x = data.x_test[:n]
    tx = map_in_batches(solver, x)
    # a latent source (noise-D) has another shape than T(x): no transport cost there
    out = {"transport_cost": transport_cost(x, tx)} if x.shape == tx.shape else {}
    if data.kind == "voxel" and data.palette is not None and tx.shape[1] == data.palette.shape[1]:
        colors = data.labels["x_test_color"][:n]
        out["color_preservation"] = color_preservation(tx, colors, data.palette.to(tx.device))
    return out


def _check_finite(losses: dict[str, float], step: int, ckpt_dir: Path) -> None:
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    if bad:
        last = latest_checkpoint(ckpt_dir)
        kept = f"last good checkpoint {last}" if last else "no checkpoint was written yet"
        raise DivergenceError(
            f"training diverged at step {step}: {', '.join(f'{k}={losses[k]}' for k in bad)}; "
            f"{kept}; lower the learning rates (--set lr_...=) or use a smaller preset"
        )


def _params_finite(solver: Solver) -> bool:
    return all(
        bool(torch.isfinite(p).all()) for m in solver.modules.values() for p in m.parameters()
    )


class _StopFlag:
    """SIGINT sets a flag; the loop writes a checkpoint at the next step boundary and returns."""

    def __init__(self) -> None:
        self.hit = False
        self._old: Any = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.hit:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.hit = True

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def prepare_out(out: Path, run: RunConfig, resume: bool) -> None:
    """Refuse to mix two runs in one folder; write config.json for a new run."""
    check_writable(out)
    cfg_path = out / "config.json"
    if resume:
        if not cfg_path.is_file():
            raise CheckpointError(f"{out}: no run to resume (no config.json); drop --resume")
        return
    if cfg_path.exists() or latest_checkpoint(out / "ckpt") is not None:
        raise CheckpointError(
            f"{out}: folder already holds a run; pass --resume to continue it or choose another --out"
        )
    atomic_write_json(cfg_path, run.to_dict())


def amp_dtype(mode: str, device: torch.device, solver: Solver | type[Solver]) -> torch.dtype | None:
    """bf16 autocast: 'auto' turns it on for CUDA, 'bf16' on any device (on CPU it rarely
    pays), 'off' never; a solver whose losses need fp32 (`amp_safe = False`: double backward
    through convex potentials, float64 fits) always runs in fp32."""
    if mode not in ("auto", "bf16", "off"):
        raise ConfigError(f"--set amp={mode}: choose auto, bf16 or off")
    wanted = mode == "bf16" or (mode == "auto" and device.type == "cuda")
    return torch.bfloat16 if wanted and solver.amp_safe else None


def train(
    run: RunConfig,
    out: Path,
    resume: bool = False,
    show_progress: bool = True,
    tb_dir: Path | None = None,
    data: PairData | None = None,
) -> TrainResult:
    """Train `run` into folder `out` (config.json, ckpt/, tb/, metrics.json).

    Under `torchrun` every rank trains on its own batches with gradients averaged across
    ranks (otzoo.distributed); rank 0 alone writes.
    """
    out = Path(out)
    device = resolve_device(run.train.device)
    rank, world_size = distributed.world()
    if world_size > 1 and device.type == "cuda":
        device = distributed.local_cuda_device()
    parallel = distributed.init(device)
    main = rank == 0
    if main:
        prepare_out(out, run, resume)
    distributed.barrier()
    seed_everything(run.seed)
    if data is None:
        data = load_pair(run.pair, run.data, seed=run.seed)
    solver = build_solver(run, data, device)
    if parallel:
        distributed.share_weights(solver)
        seed_everything(run.seed + 7919 * rank)  # each rank draws its own noise
    batch_seed = run.seed + 1 + 7919 * rank
    batches: TensorBatches | FreshBatches
    if isinstance(data, VectorPairData) and data.known is not None:
        # known-map pairs: fresh draws of P and Q every batch, as in the benchmark papers
        batches = FreshBatches(data, run.train.batch_size, seed=batch_seed, device=device)
    else:
        x_train, y_train = to_device(data.x_train, device), to_device(data.y_train, device)
        batches = TensorBatches(x_train, y_train, run.train.batch_size, seed=batch_seed)
    autocast = amp_dtype(run.train.amp, device, solver)
    ckpt_dir = out / "ckpt"

    start, seconds = 0, 0.0
    if resume:
        last = latest_checkpoint(ckpt_dir)
        if last is None:
            raise CheckpointError(f"{ckpt_dir}: no checkpoint to resume from; drop --resume")
        ckpt = restore(solver, last, run.solver, device)
        start, seconds = int(ckpt["step"]), float(ckpt.get("train_seconds", 0.0))
        per_rank = ckpt.get("batch_rng_ranks", [ckpt["batch_rng"]])
        batches.generator.set_state(per_rank[rank] if rank < len(per_rank) else per_rank[0])
        set_rng_state(ckpt["rng"])

    from torch.utils.tensorboard import SummaryWriter

    from otzoo.viz import render_grid

    writer = (
        SummaryWriter(str(tb_dir or out / "tb"), purge_step=start if resume else None)
        if main
        else None
    )
    fixed = data.x_test[:N_PICTURE].to(device)

    def checkpoint(step: int) -> None:
        batch_states = [batches.generator.get_state()]
        if parallel:
            batch_states = distributed.gather(batch_states[0])
        if not main:
            return
        if not _params_finite(solver):
            _check_finite({"parameters": float("nan")}, step, ckpt_dir)
        payload = {
            "solver": run.solver,
            "config": run.to_dict(),
            "state": solver.state_dict(),
            "rng": rng_state(),
            "batch_rng": batch_states[0],
            "batch_rng_ranks": batch_states,
            "train_seconds": seconds,
        }
        save_checkpoint(ckpt_dir, step, payload, keep=run.train.keep_checkpoints)

    def log(step: int, losses: dict[str, float]) -> None:
        if step % run.train.log_every == 0 or step == run.train.steps:
            for k, v in losses.items():
                writer.add_scalar(f"loss/{k}", v, step)
        if run.train.eval_every and step % run.train.eval_every == 0:
            for k, v in quick_metrics(solver, data, run.train.eval_samples).items():
                writer.add_scalar(f"metrics/{k}", v, step)
        if step % run.train.image_every == 0:
            pictures(step)

    def pictures(step: int) -> None:
        if data.kind != "voxel":
            return
        grid = render_grid([fixed.cpu(), map_in_batches(solver, fixed).cpu()], ["input", "map"])
        writer.add_image("maps", grid, step, dataformats="HWC")

    total = run.train.steps
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
    ]
    columns += [TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[losses]}")]
    step = start
    try:
        with (
            _StopFlag() as stop,
            Progress(*columns, disable=not (show_progress and main)) as bar,
        ):
            task = bar.add_task(f"{run.solver} {run.pair}", total=total, completed=start, losses="")
            if start == 0 and main:
                pictures(0)
            while step < total and not stop.hit:
                t0 = time.perf_counter()
                with torch.autocast(
                    device.type, dtype=autocast or torch.float32, enabled=bool(autocast)
                ):
                    losses = solver.step(batches)
                seconds += time.perf_counter() - t0
                step += 1
                solver.steps_done = step
                _check_finite(losses, step, ckpt_dir)
                if main:
                    log(step, losses)
                if step % run.train.ckpt_every == 0 or step == total:
                    checkpoint(step)
                shown = " ".join(f"{k}={v:.4g}" for k, v in losses.items())
                bar.update(task, completed=step, losses=shown)
            if stop.hit:
                checkpoint(step)
                return TrainResult(out, step, {"interrupted": 1.0}, solver)
        metrics: dict[str, float] = {}
        if main:
            metrics = quick_metrics(solver, data, run.train.eval_samples)
            for k, v in metrics.items():
                writer.add_scalar(f"metrics/{k}", v, step)
            metrics.update(
                steps=float(step), train_seconds=seconds, seconds_per_step=seconds / max(step, 1)
            )
            atomic_write_json(out / "metrics.json", metrics)
        return TrainResult(out, step, metrics, solver)
    finally:
        if writer is not None:
            writer.close()


def load_run(run_dir: Path, device: str = "cpu") -> tuple[RunConfig, Solver, PairData]:
    """Rebuild a finished (or interrupted) run from its folder: config, solver at its last
    checkpoint, and its data."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(
            f"{run_dir}: not a run folder (no config.json); pass the --out folder of a run"
        )
    try:
        raw = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{cfg_path}: malformed JSON ({err.msg}); the run folder is damaged"
        ) from None
    run = RunConfig.from_dict(raw, get_solver(raw.get("solver", "?")))
    run = replace(run, train=replace(run.train, device=device))
    dev = resolve_device(device)
    data = load_pair(run.pair, run.data, seed=run.seed)
    solver = build_solver(run, data, dev)
    last = latest_checkpoint(run_dir / "ckpt")
    if last is None:
        raise CheckpointError(f"{run_dir}: run has no checkpoint yet; train it first")
    restore(solver, last, run.solver, dev)
    return run, solver, data


def restore(solver: Solver, path: Path, solver_id: str, device: torch.device) -> dict[str, Any]:
    """Load a checkpoint into `solver`, refusing one of another solver or network shape."""
    ckpt = load_checkpoint(path, map_location=device)
    if ckpt.get("solver") != solver_id:
        raise CheckpointError(
            f"{path}: checkpoint of solver {ckpt.get('solver')!r}, not {solver_id!r}; "
            "pass the run folder it belongs to"
        )
    try:
        solver.load_state_dict(ckpt["state"])
    except (KeyError, RuntimeError, ValueError) as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "size mismatch" in ln or "key" in ln), lines[0])
        raise CheckpointError(
            f"{path}: does not fit this run's networks ({detail[:160]}); "
            "use it with the config it was written with"
        ) from None
    return ckpt
