"""The one training loop: every caller that advances a solver (`otzoo train`, `otzoo bench w2`,
the time-to-quality benchmark, the conformance checks, the tests) goes through `run_steps`.

It alone assigns `solver.steps_done`, sets the learning-rate schedule, runs each step under
autocast when asked, stops on a non-finite loss, and reports every step to a callback. What a
caller adds (TensorBoard, checkpoints, pictures, periodic evaluation, a progress bar) lives in
that callback, so the step sequence, and with it every random draw, is the same for all of them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from otzoo.errors import DivergenceError
from otzoo.solver import Batches, Solver


@dataclass(frozen=True)
class StepInfo:
    """What the callback hears after every step."""

    step: int  # steps_done, already advanced
    losses: dict[str, float]
    seconds: float  # time inside solver.step during this call of run_steps, so far


OnStep = Callable[[StepInfo], None]


def cosine_factor(step: int, total: int, floor: float = 1e-4, done: float = 0.0) -> float:
    """Cosine decay from 1 to `floor` over `total` steps, then flat (w2ot's schedule). `done`
    (a share of a budget already spent) moves the decay on when it is ahead of the steps."""
    if total <= 0:
        return 1.0
    t = min(max(step / total, done), 1.0)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def set_lr_factor(solver: Solver, factor: float) -> None:
    """Every optimizer's lr = its initial lr x factor. The initial lr is kept in the param group
    (`initial_lr`), so it is checkpointed and a resumed run continues the same schedule."""
    for opt in solver.optimizers.values():
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * factor


@dataclass(frozen=True)
class LoopResult:
    steps_done: int
    seconds: float  # wall time inside solver.step, this call only
    stopped: str  # "done" | "stopped" (asked to) | "time budget" | "cpu budget"


class Diverged(DivergenceError):
    """A step returned a NaN or Inf loss; `step` and `losses` say which."""

    def __init__(self, step: int, losses: dict[str, float]) -> None:
        self.step, self.losses = step, losses
        bad = ", ".join(f"{k}={v}" for k, v in losses.items() if not math.isfinite(v))
        super().__init__(f"training diverged at step {step}: {bad}")


def run_steps(
    solver: Solver,
    batches: Batches,
    until: int,
    *,
    amp: torch.dtype | None = None,
    lr_decay_steps: int = 0,
    on_step: OnStep | None = None,
    should_stop: Callable[[], bool] | None = None,
    time_budget_s: float | None = None,
    cpu_budget_s: float | None = None,
) -> LoopResult:
    """Advance `solver` from its `steps_done` to `until` outer steps.

    `amp`: autocast dtype (None: full precision). `lr_decay_steps` > 0: cosine decay of every
    lr over that many steps (0: constant). `on_step(StepInfo)` runs after every step. `should_stop` is asked before every step (a signal flag);
    `time_budget_s` caps the step time of this call (wall seconds; the schedule does not know of
    it). `cpu_budget_s` caps the process CPU seconds of this call's steps, and a cosine decay
    ends there when the budget comes before `lr_decay_steps` (its progress is the larger of
    the two shares: a budget-bound run ends at a low lr, not cut off at a high one; the lr then
    depends on timing, so such a run is not bit-reproducible). Raises `Diverged` on a non-finite
    loss.
    """
    seconds = cpu = 0.0
    device_type = solver.device.type
    while solver.steps_done < until:
        if should_stop is not None and should_stop():
            return LoopResult(solver.steps_done, seconds, "stopped")
        if time_budget_s is not None and seconds >= time_budget_s:
            return LoopResult(solver.steps_done, seconds, "time budget")
        if cpu_budget_s is not None and cpu >= cpu_budget_s:
            return LoopResult(solver.steps_done, seconds, "cpu budget")
        if lr_decay_steps > 0:
            spent = 0.0 if cpu_budget_s is None else cpu / cpu_budget_s
            set_lr_factor(solver, cosine_factor(solver.steps_done, lr_decay_steps, done=spent))
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.autocast(device_type, dtype=amp or torch.float32, enabled=amp is not None):
            losses = solver.step(batches)
        seconds += time.perf_counter() - t0
        cpu += time.process_time() - c0
        solver.steps_done += 1
        if not all(math.isfinite(v) for v in losses.values()):
            raise Diverged(solver.steps_done, losses)
        if on_step is not None:
            on_step(StepInfo(solver.steps_done, losses, seconds))
    return LoopResult(solver.steps_done, seconds, "done")
