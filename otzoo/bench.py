"""`otzoo bench w2`: vector solvers on the W2 benchmark pairs (Mix3toMix10, known optimal map),
scored by forward L2-UVP beside the published table and the [ID] / [L] baselines.

Every (solver, dim) cell resolves its config through the normal machinery (`config.resolve`:
preset, then the solver's own vector defaults for that dimension (`Solver.pair_presets`), then
the user's `--set` / `--steps`), builds the solver with `registry.build_solver`, and trains it
with the one loop (`loop.run_steps`, with a time cap and no checkpoints) on the pair's batches,
fresh samples of P and Q at every draw. Scores come from `evaluate.known_map_scores` on 2**14
fresh samples with one fixed seed, the same for every solver and for the baselines.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from otzoo.batches import for_pair
from otzoo.bench_outputs import FIT_SAMPLES, rich_table, write_outputs
from otzoo.config import RunConfig, parse_overrides, resolve
from otzoo.data.benchmarks import KnownMapPair, linear_bures_map
from otzoo.data.pairs import DataConfig
from otzoo.data.spec import parse_pair
from otzoo.data.vectors import VectorPairData, load_vector_pair
from otzoo.errors import ConfigError, DataError
from otzoo.evaluate import UVP_SAMPLES, UVP_SEED, known_map_scores
from otzoo.loop import Diverged, OnStep, run_steps
from otzoo.metrics.uvp import evaluate_map
from otzoo.progress import StepProgress
from otzoo.registry import build_solver, get_solver
from otzoo.runtime import (
    atomic_write_json,
    check_out_path,
    machine_summary,
    resolve_device,
    seed_everything,
)
from otzoo.train import amp_dtype

DIMS = (2, 4, 8, 16, 32)
BENCH_TRAIN = 2**12  # fixed training set (x_all / y_all) for discrete solvers; neural ones sample
BENCH_PRESET = "quick"


def bench_overrides(solver_id: str, dim: int) -> dict[str, Any]:
    """The settings a cell runs with before the user's own: the solver's vector defaults for
    this dimension (`Solver.pair_presets`, tuned per plugin; benchmarks/w2_bench.md)."""
    return get_solver(solver_id).pair_presets(parse_pair(f"w2:{dim}"), BENCH_PRESET, DataConfig())


@dataclass
class Cell:
    """One trained (solver, dim) and its scores; uvp is None when training diverged."""

    solver: str
    dim: int
    uvp: float | None
    cosine: float | None
    steps: int
    wall_s: float
    cpu_s: float
    status: str  # "ok" | "cpu budget" (ended there, its decay complete) | "diverged"
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchResult:
    cells: list[Cell]
    baselines: dict[str, dict[int, dict[str, float]]]  # "[ID]" / "[L]" -> dim -> metrics
    seed: int
    command: str
    machine: str


def available_dims(weights: Path) -> list[int]:
    """Dimensions whose two potentials ({dim}_v1.pt, {dim}_v2.pt) are in the weights folder."""
    found = {
        int(p.name.split("_")[0])
        for p in Path(weights).glob("*_v1.pt")
        if p.name.split("_")[0].isdigit()
    }
    return sorted(d for d in found if (Path(weights) / f"{d}_v2.pt").is_file())


def parse_dims(text: str, weights: Path | None = None) -> list[int]:
    """'2,4,8' -> [2, 4, 8]; each a positive integer, listed once. 'all': every dimension
    whose files are in `weights`."""
    if text.strip() == "all":
        dims = available_dims(weights) if weights is not None else []
        if not dims:
            raise ConfigError(
                f"--dims all: no benchmark files ({{dim}}_v1.pt and _v2.pt) in {weights}; "
                "pass --weights DIR, the w2bench-mix3tomix10 folder"
            )
        return dims
    parts = [s.strip() for s in text.split(",") if s.strip()]
    dims = [int(s) for s in parts if s.isdigit()]
    if not dims or len(dims) < len(parts) or min(dims) < 1 or len(set(dims)) != len(dims):
        raise ConfigError(
            f"--dims {text!r}: list positive dimensions once each, e.g. 2,4,8, or all"
        )
    return dims


def check_weights(weights: Path, dims: list[int]) -> None:
    """Every needed benchmark file exists, checked before any training starts."""
    for dim in dims:
        for part in ("v1", "v2"):
            path = Path(weights) / f"{dim}_{part}.pt"
            if not path.is_file():
                raise DataError(
                    f"{path}: W2 benchmark weights file not found; pass --weights DIR holding "
                    f"{dim}_v1.pt and {dim}_v2.pt (w2bench-mix3tomix10), or drop dim {dim}"
                )


def resolve_cells(
    solvers: list[str], dims: list[int], sets: list[str], steps: int | None, seed: int
) -> dict[tuple[str, int], tuple[RunConfig, dict[str, Any]]]:
    """(RunConfig, applied overrides) per cell: non-vector solvers and bad keys fail up front."""
    runs = {}
    for sid in solvers:
        cls = get_solver(sid)
        if "vector" not in cls.tags:
            raise ConfigError(
                f"solver {sid!r} does not support vector data (tags: {', '.join(sorted(cls.tags))}); "
                "bench w2 needs solvers tagged 'vector' (see `otzoo solvers`)"
            )
        user = parse_overrides(list(sets) + ([f"steps={steps}"] if steps is not None else []), cls)
        for dim in dims:
            run = resolve(cls, f"w2:{dim}", BENCH_PRESET, user, seed=seed)
            shown = {**bench_overrides(sid, dim), **user}
            runs[sid, dim] = (run, {k: _resolved(run, k) for k in shown})
    return runs


def _resolved(run: RunConfig, key: str) -> Any:
    """The value `key` ended with in `run` (whichever of its configs owns it)."""
    for section in (run.train, run.data, run.solver_config):
        if hasattr(section, key):
            return getattr(section, key)
    raise KeyError(key)


def baselines(pair: KnownMapPair, seed: int) -> dict[str, dict[str, float]]:
    """[ID] and [L] scored exactly like a solver; [L] is fitted on 2**14 samples of P and Q."""
    gx = torch.Generator().manual_seed(seed * 2 + 101)
    gy = torch.Generator().manual_seed(seed * 2 + 102)
    linear = linear_bures_map(pair.sample_x(FIT_SAMPLES, gx), pair.sample_y(FIT_SAMPLES, gy))
    return {
        "[ID]": evaluate_map(pair, lambda x: x, n=UVP_SAMPLES, seed=UVP_SEED),
        "[L]": evaluate_map(pair, linear, n=UVP_SAMPLES, seed=UVP_SEED),
    }


def train_cell(
    run: RunConfig,
    data: VectorPairData,
    cpu_budget_s: float | None = None,
    on_step: OnStep | None = None,
) -> Cell:
    """Train one solver on one pair with fresh batches, then score its map exactly.
    `cpu_budget_s`: the steps' CPU seconds at most, a cosine decay fitted to end there
    (`run_steps`), so a cell's budget holds on a slower machine at the price of steps."""
    device = resolve_device(run.train.device)
    seed_everything(run.seed)
    solver = build_solver(run, data, device)
    batches = for_pair(data, run.train.batch_size, seed=run.seed + 1, device=device)
    amp = amp_dtype(run.train.amp, device, solver)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    status = "ok"
    try:
        result = run_steps(
            solver,
            batches,
            run.train.steps,
            amp=amp,
            lr_decay_steps=run.train.decay_steps(),
            on_step=on_step,
            cpu_budget_s=cpu_budget_s,
        )
        status = "ok" if result.stopped == "done" else result.stopped
    except Diverged:
        status = "diverged"
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    uvp = cos = None
    if status != "diverged":
        solver.train_mode(False)
        scores = known_map_scores(solver.transport, data, device=solver.device)
        if math.isfinite(scores["l2_uvp"]):
            uvp, cos = scores["l2_uvp"], scores["cosine"]
        else:
            status = "diverged"
    dim = data.known.dim if data.known else 0
    return Cell(run.solver, dim, uvp, cos, solver.steps_done, wall, cpu, status)


def _train_with_bar(
    run: RunConfig, data: VectorPairData, cpu_budget_s: float | None, label: str, console: Any
) -> Cell:
    """train_cell with progress (`console` None: silent)."""
    with StepProgress(label, run.train.steps, enabled=console is not None, console=console) as bar:
        return train_cell(run, data, cpu_budget_s, lambda info: bar.update(info.step, info.losses))


def run_w2_bench(
    solvers: list[str],
    dims: list[int],
    weights: Path,
    out: Path,
    steps: int | None = None,
    cpu_budget_min: float | None = None,
    seed: int = 0,
    sets: list[str] | None = None,
    command: str = "",
    show_progress: bool = True,
) -> BenchResult:
    """Train every solver on every dim, write uvp.json, results.json, report.md and uvp.png.

    (The CLI runs it with `--threads`, default 1: the nets are small; on a busy 2-core CPU a
    128x128 MLP step took 1.6 ms on one thread and 280 ms on two.)
    """
    from rich.console import Console

    if cpu_budget_min is not None and not cpu_budget_min > 0:
        raise ConfigError(f"--cpu-budget {cpu_budget_min}: use a positive number of minutes")
    if steps is not None and steps < 1:
        raise ConfigError(f"--steps {steps}: use a positive number of steps")
    runs = resolve_cells(solvers, dims, sets or [], steps, seed)
    check_weights(weights, dims)
    out = Path(out)
    if (out / "uvp.json").exists():
        raise ConfigError(f"{out}: already holds a benchmark (uvp.json); choose another --out")
    check_out_path(out)
    console = Console()
    budget_s = None if cpu_budget_min is None else 60.0 * cpu_budget_min
    cells: list[Cell] = []
    base: dict[str, dict[int, dict[str, float]]] = {"[ID]": {}, "[L]": {}}
    n_cells, k = len(dims) * len(solvers), 0
    for dim in dims:
        spec = parse_pair(f"w2:{dim}")
        data = load_vector_pair(spec, seed, weights, n_train=BENCH_TRAIN, n_test=1024)
        assert data.known is not None
        for name, scores in baselines(data.known, seed).items():
            base[name][dim] = scores
        for sid in solvers:
            run, overrides = runs[sid, dim]
            k += 1
            label = f"cell {k}/{n_cells}: {sid} w2:{dim}"
            cell = _train_with_bar(run, data, budget_s, label, console if show_progress else None)
            cell.settings = overrides
            cells.append(cell)
            shown = "diverged" if cell.uvp is None else f"UVP {cell.uvp:.3g}%"
            console.print(
                f"{sid} w2:{dim}: {shown} after {cell.steps} steps, "
                f"{cell.cpu_s / 60:.2f} CPU min ({cell.status})"
            )
            record = asdict(cell) | {"config": run.to_dict()}
            atomic_write_json(out / "cells" / f"{sid}_d{dim}.json", record)
    device = str(resolve_device(runs[solvers[0], dims[0]][0].train.device))
    result = BenchResult(cells, base, seed, command, machine_summary(device))
    write_outputs(result, out)
    table, legend = rich_table(result)
    console.print(table)
    console.print(legend, highlight=False)
    console.print(f"wrote {out / 'uvp.json'}, {out / 'report.md'}, {out / 'uvp.png'}")
    return result
