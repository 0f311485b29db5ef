"""Throughput of one outer training step for every voxel solver, in samples/s.

Compares plain fp32 eager execution with the other execution paths otzoo offers (bf16
autocast, channels-last 3D memory layout) and with `torch.compile` of every network (the
inductor backend; compile time is excluded, recompiles are not) on 3x16^3 voxels at batch 64. "samples" counts every
sample a solver draws from the data during its step (an NOT step with K_T = 5 draws 7 batches).
A solver that draws once for many steps (`otcfm`'s plan over `ot_batch` draws) may draw nothing
in the window: its cell gives seconds per step instead. The ratios are of the step times.

    .venv/bin/python benchmarks/throughput.py [--solvers not,otm] [--batch 64] [--steps 3] [--preset quick]
        [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from otzoo.batches import BatchSampler, rows_of
from otzoo.config import resolve
from otzoo.errors import OtzooError
from otzoo.loop import run_steps
from otzoo.registry import get_solver, list_solvers
from otzoo.runtime import resolve_device, torch_threads
from otzoo.solver import PairInfo, Solver

MODES = {
    "fp32 eager": dict(amp=None, channels_last=False),
    "bf16 autocast": dict(amp=torch.bfloat16, channels_last=False),
    "channels-last": dict(amp=None, channels_last=True),
    "bf16 + channels-last": dict(amp=torch.bfloat16, channels_last=True),
    "compiled": dict(amp=None, channels_last=False, compile=True),
}


class Counter:
    """Counts the samples a solver draws through the wrapped draw functions."""

    def __init__(self) -> None:
        self.drawn = 0

    def wrap(self, draw):
        def counted(n: int, generator: torch.Generator) -> torch.Tensor:
            out = draw(n, generator)
            self.drawn += len(out)
            return out

        return counted


def compile_networks(solver: Solver) -> None:
    """Replace each network attribute of the solver by its torch.compile wrapper (which
    shares the parameters, so optimizers keep working)."""
    nets = {id(m) for m in solver.modules.values()}
    for name, value in list(vars(solver).items()):
        if isinstance(value, torch.nn.Module) and id(value) in nets:
            setattr(solver, name, torch.compile(value))


def measure(
    solver_id: str, mode: dict, batch: int, steps: int, preset: str, device: str = "cpu"
) -> tuple[float, float]:
    """(samples drawn, seconds) per outer step over `steps` steps of the one loop, after two
    warm-up steps."""
    cls = get_solver(solver_id)
    run = resolve(cls, "3-5", preset, {"batch_size": batch})
    torch.manual_seed(0)
    shape = (3, 16, 16, 16)
    info = PairInfo("voxel", shape, shape)
    solver = cls(run.solver_config, info, resolve_device(device))
    fmt = torch.channels_last_3d if mode["channels_last"] else torch.contiguous_format
    for m in solver.modules.values():
        m.to(memory_format=fmt)
    if mode.get("compile"):
        compile_networks(solver)
    x = (torch.rand(512, *shape) * 2 - 1).to(solver.device).contiguous(memory_format=fmt)
    y = (torch.rand(512, *shape) * 2 - 1).to(solver.device).contiguous(memory_format=fmt)
    counter = Counter()
    gen = torch.Generator().manual_seed(0)
    batches = BatchSampler(counter.wrap(rows_of(x)), counter.wrap(rows_of(y)), batch, gen, x, y)
    run_steps(solver, batches, 2, amp=mode["amp"])  # warm-up (first-step work, compilation)
    counter.drawn = 0
    t0 = time.perf_counter()
    run_steps(solver, batches, 2 + steps, amp=mode["amp"])
    return counter.drawn / steps, (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    voxel = [s for s in list_solvers() if {"voxel", "neural"} <= get_solver(s).tags]
    p.add_argument("--solvers", default=",".join(voxel))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--preset", default="quick")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's own)")
    a = p.parse_args()
    try:
        with torch_threads(a.threads):
            print_table(a)
    except OtzooError as err:  # a bad --threads or --device: one line, no traceback
        p.error(str(err))


def print_table(a: argparse.Namespace) -> None:
    """One row per solver: each mode's rate and its speed-up over the first mode."""
    modes = a.modes.split(",")
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {a.batch}, "
        f"preset {a.preset}, device {resolve_device(a.device)}"
    )
    print("| solver | " + " | ".join(modes) + " |")
    print("|---" * (len(modes) + 1) + "|")
    for sid in a.solvers.split(","):
        cells, base = [], float("nan")
        for m in modes:
            try:
                drawn, seconds = measure(sid, MODES[m], a.batch, a.steps, a.preset, a.device)
            except Exception as err:  # e.g. a double backward torch.compile cannot trace
                print(f"{sid} / {m}: failed ({type(err).__name__}: {str(err)[:120]})", flush=True)
                cells.append("failed")
                continue
            base = seconds if m == modes[0] else base
            rate = f"{drawn / seconds:.1f}" if drawn else f"{seconds:.3f} s/step"
            cells.append(f"{rate} ({base / seconds:.2f}x)")
        print(f"| {sid} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
