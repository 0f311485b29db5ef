"""Time to quality: training minutes until a solver's map reaches a target accuracy and color
preservation on the test split (judged by otzoo's cached 3D classifier).

Only time spent in `solver.step` counts; evaluation pauses the clock. Prints one line per
evaluation, then the first time both thresholds held.

    .venv/bin/python benchmarks/time_to_quality.py --solver not --pair 3-5 --preset quick \
        --budget-min 10 [--set key=value ...] [--accuracy 0.95] [--color 0.99] [--keep-going]
"""

from __future__ import annotations

import argparse
import time

import torch

from otzoo.config import parse_overrides, resolve
from otzoo.data import load_pair
from otzoo.evaluate import evaluate
from otzoo.judge import get_judge
from otzoo.registry import get_solver
from otzoo.runtime import resolve_device, seed_everything
from otzoo.train import TensorBatches, amp_dtype, build_solver


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--solver", default="not")
    p.add_argument("--pair", default="3-5")
    p.add_argument("--preset", default="quick")
    p.add_argument("--set", dest="sets", action="append", default=[])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget-min", type=float, default=10.0)
    p.add_argument("--eval-every-s", type=float, default=30.0)
    p.add_argument("--accuracy", type=float, default=0.95)
    p.add_argument("--color", type=float, default=0.99)
    p.add_argument(
        "--keep-going", action="store_true", help="train to the budget end (is the level held?)"
    )
    a = p.parse_args()

    cls = get_solver(a.solver)
    run = resolve(cls, a.pair, a.preset, parse_overrides(a.sets, cls), seed=a.seed)
    device = resolve_device(run.train.device)
    seed_everything(run.seed)
    data = load_pair(run.pair, run.data, seed=run.seed)
    judge = get_judge(run.data, run.seed, device=device, log=print)
    print(
        f"judge accuracy {judge.accuracy:.3f}; {len(data.x_test)} test inputs; config {run.to_dict()}"
    )
    solver = build_solver(run, data, device)
    batches = TensorBatches(
        data.x_train.to(device), data.y_train.to(device), run.train.batch_size, run.seed + 1
    )
    autocast = amp_dtype(run.train.amp, device, solver)

    trained, step, next_eval, reached = 0.0, 0, 0.0, None
    print("| train min | step | target acc | color | cost | fid | lit share |")
    print("|---|---|---|---|---|---|---|")
    while trained <= a.budget_min * 60:
        if trained >= next_eval:
            solver.train_mode(False)
            m = evaluate(solver.transport, data, judge, device=device)
            solver.train_mode(True)
            acc, col = m.get("target_accuracy", 0.0), m.get("color_preservation", 0.0)
            print(
                f"| {trained / 60:.2f} | {step} | {acc:.3f} | {col:.3f} | "
                f"{m.get('transport_cost', float('nan')):.4f} | {m.get('fid', float('nan')):.2f} | "
                f"{m.get('lit_share', float('nan')):.3f} |",
                flush=True,
            )
            if reached is None and acc >= a.accuracy and col >= a.color:
                reached, reached_step = trained, step
                if not a.keep_going:
                    break
            next_eval = trained + a.eval_every_s
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=bool(autocast)):
            solver.step(batches)
        trained += time.perf_counter() - t0
        step += 1
        solver.steps_done = step  # as the trainer does: step-driven schedules see it
    if reached is None:
        print(
            f"not reached: accuracy >= {a.accuracy} and color >= {a.color} within {a.budget_min} min"
        )
    else:
        print(
            f"reached accuracy >= {a.accuracy} and color >= {a.color} after {reached / 60:.2f} training minutes ({reached_step} steps)"
        )


if __name__ == "__main__":
    main()
