"""Time to quality: training minutes until a solver's map reaches a target accuracy and color
preservation on the test split (judged by otzoo's cached 3D classifier), for every solver and
seed asked, with the final value of every metric and the swing (the lowest target accuracy over
the last 30% of the run's evaluations). With `--set select_every=N` every evaluation measures
the map the run has chosen so far on training data (otzoo.select), as `otzoo train` ends with.

Training goes through otzoo's one loop (otzoo.loop.run_steps); only time spent in
`solver.step` counts: evaluation pauses the clock. One table row per evaluation, then a summary.

    .venv/bin/python benchmarks/time_to_quality.py --solvers not,otm --seeds 0,1 --pair 3-5 \
        --preset quick --budget-min 10 [--set key=value ...] [--accuracy 0.95] [--color 0.99] \
        [--keep-going] [--set rotation=z] [--init-from RUN_DIR]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from otzoo.batches import for_pair
from otzoo.config import parse_overrides, resolve
from otzoo.data import load_pair
from otzoo.errors import OtzooError
from otzoo.evaluate import evaluate_solver
from otzoo.judge import get_judge
from otzoo.loop import Diverged, StepInfo, run_steps
from otzoo.registry import build_solver, get_solver
from otzoo.runtime import machine_summary, resolve_device, seed_everything, torch_threads
from otzoo.select import MapSelector
from otzoo.train import amp_dtype
from otzoo.warm_start import load_init

SHOWN = ("target_accuracy", "color_preservation", "color_purity", "worst_color_accuracy")
SHOWN += ("fid", "lit_share", "transport_cost")
SUMMARY = (*SHOWN, "fid_floor")  # issue 14's fid target is 1.3 x the floor
SWING_SHARE = 0.3  # the swing: lowest target accuracy over this last share of the run


def measure(sid: str, seed: int, a: argparse.Namespace) -> dict[str, float]:
    """Train one solver with one seed; print its trajectory; return its summary."""
    cls = get_solver(sid)
    values = parse_overrides(a.sets, cls) | ({"device": a.device} if a.device else {})
    run = resolve(cls, a.pair, a.preset, values, seed=seed)
    device = resolve_device(run.train.device)
    # The judge first: loading it builds a network, which draws from torch's global RNG. Then
    # seed, data, solver and batches in train()'s order, so step N here is compare's step N.
    judge = get_judge(run.data, run.seed, device=device, log=print)
    seed_everything(run.seed)
    data = load_pair(run.pair, run.data, seed=run.seed)
    solver = build_solver(run, data, device)
    if a.init_from:  # a warm start, as `otzoo train --init-from` (transfer)
        step = load_init(Path(a.init_from), solver)
        print(f"warm-started from {a.init_from} (its step {step})")
    batches = for_pair(data, run.train.batch_size, seed=run.seed + 1, device=device)
    print(f"\n## {sid}, seed {seed}: judge accuracy {judge.accuracy:.3f}, config {run.to_dict()}")
    print("| train min | step | " + " | ".join(SHOWN) + " |")
    print("|---" * (len(SHOWN) + 2) + "|")
    trail: list[tuple[float, dict[str, float]]] = []
    state = {"next": 0.0, "reached": math.nan, "reached_step": -1.0, "chosen": math.nan}
    # --set select_every=N: the run's map is the one chosen on training data (otzoo.select), so
    # every row measures that map (what a user would get, stopping there), not the live one
    selector = MapSelector(data, run.train.select_samples, run.seed)
    select_every = run.train.select_every if solver.modules else 0  # as `otzoo train`

    def check(seconds: float, step: int) -> None:
        if select_every:
            with selector.chosen_in(solver) as chosen:
                m = evaluate_solver(solver, data, judge, run.seed)
            state["chosen"] = float(chosen if chosen is not None else math.nan)
            step_cell = f"{step} (map of {state['chosen']:.0f})"
        else:
            m = evaluate_solver(solver, data, judge, run.seed)
            step_cell = str(step)
        trail.append((seconds, m))
        cells = " | ".join(f"{m.get(k, math.nan):.4g}" for k in SHOWN)
        print(f"| {seconds / 60:.2f} | {step_cell} | {cells} |", flush=True)
        ok = m.get("target_accuracy", 0) >= a.accuracy and m.get("color_preservation", 0) >= a.color
        if ok and math.isnan(state["reached"]):
            state["reached"], state["reached_step"] = seconds / 60, float(step)
        state["next"] = seconds + a.eval_every_s

    def on_step(info: StepInfo) -> None:
        if select_every and info.step % select_every == 0:
            selector.offer(solver)  # outside the timed step, as in `otzoo train`
        if info.seconds >= state["next"]:
            check(info.seconds, info.step)

    if select_every:
        selector.offer(solver)  # the untrained map competes too, as in `otzoo train`
    check(0.0, 0)
    stop = (lambda: not math.isnan(state["reached"])) if not a.keep_going else None
    status = "ok"
    try:
        result = run_steps(
            solver,
            batches,
            run.train.steps if a.steps_cap else 10**9,
            amp=amp_dtype(run.train.amp, device, solver),
            lr_decay_steps=run.train.decay_steps(),
            on_step=on_step,
            should_stop=stop,
            time_budget_s=a.budget_min * 60,
        )
        if select_every and result.steps_done % select_every:
            selector.offer(solver)
        if trail[-1][0] < result.seconds:
            check(result.seconds, result.steps_done)
    except Diverged as err:
        status = f"diverged ({err})"
    last = trail[-1][1]
    tail = [m for t, m in trail if t >= (1 - SWING_SHARE) * trail[-1][0]]
    swing = min(m.get("target_accuracy", math.nan) for m in tail)
    summary = {"reached_min": state["reached"], "steps": float(solver.steps_done), "swing": swing}
    summary["selected_step"] = state["chosen"]
    summary.update({k: last.get(k, math.nan) for k in SUMMARY})
    reached = "not reached" if math.isnan(state["reached"]) else f"{state['reached']:.2f} min"
    print(f"{sid} seed {seed}: {reached}; lowest accuracy over the last 30%: {swing:.3f}; {status}")
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--solvers", default="not", help="comma-separated solver ids")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--pair", default="3-5")
    p.add_argument("--preset", default="quick")
    p.add_argument("--set", dest="sets", action="append", default=[])
    p.add_argument("--budget-min", type=float, default=10.0, help="training minutes per run")
    p.add_argument(
        "--eval-every-s", type=float, default=30.0, help="training seconds between evaluations"
    )
    p.add_argument("--accuracy", type=float, default=0.95)
    p.add_argument("--color", type=float, default=0.99)
    p.add_argument(
        "--keep-going", action="store_true", help="train to the budget end (is the level held?)"
    )
    p.add_argument("--steps-cap", action="store_true", help="also stop at the preset's steps")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: one per core)")
    p.add_argument("--device", default=None, help="cpu | cuda | auto (default: the preset's)")
    p.add_argument(
        "--init-from", default=None, help="warm start from this run folder (same solver)"
    )
    a = p.parse_args()
    rows = {}
    try:
        with torch_threads(a.threads):
            for sid in a.solvers.split(","):
                for seed in (int(s) for s in a.seeds.split(",")):
                    rows[sid, seed] = measure(sid.strip(), seed, a)
    except OtzooError as err:  # a bad --threads, --set or --init-from: one line, exit status 2
        p.error(str(err))
    keys = ["reached_min", "steps", "swing", "selected_step", *SUMMARY]
    device = str(resolve_device(a.device or "auto"))
    print(f"\nmachine: {machine_summary(device)}")  # rows do not carry across CPU kinds
    print("| solver | seed | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 2) + "|")
    for (sid, seed), r in rows.items():
        print(f"| {sid} | {seed} | " + " | ".join(f"{r[k]:.4g}" for k in keys) + " |")


if __name__ == "__main__":
    main()
