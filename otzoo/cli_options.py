"""Options and helpers every `otzoo` command shares: one spelling of each option, one way to
set torch's threads, one console for tables."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from otzoo.runtime import torch_threads  # noqa: F401  (one way to set threads)

# 0: torch's own default (one thread per core, or $OMP_NUM_THREADS). Measured on the 2-core CI
# machine (quick preset, 16^3, one job alone): 2 threads ran a `not` step in 0.56 s, 1 thread in
# 1.01 s; with two jobs at once, 2 threads each took 1.29 s, 1 thread each 1.03 s. So: all cores
# for one job, --threads 1 when several run at once (README, "Speed").
DEFAULT_THREADS = 0
SolverOpt = Annotated[str | None, typer.Option("--solver", help="Solver id (see `otzoo solvers`).")]
PairOpt = Annotated[
    str | None, typer.Option("--pair", help="Pair spec, e.g. 3-5 (source 3, target 5).")
]
DataOpt = Annotated[
    str | None, typer.Option("--data", help="embedded (default) | idx:DIR | kaggle:FILE.h5")
]
GridOpt = Annotated[int | None, typer.Option("--grid", help="Voxel grid side (default 16).")]
ColorOpt = Annotated[str | None, typer.Option("--coloring", help="rgby (default) | hue | none")]
RotOpt = Annotated[str | None, typer.Option("--rotation", help="none (default) | z | 3d")]
StyleOpt = Annotated[
    str | None,
    typer.Option("--style", help="extruded (default) | pointcloud (as Kaggle's 3D MNIST voxels)"),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for data split, init and batches.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set lr_t=3e-4 (repeatable)."),
]
ThreadsOpt = Annotated[
    int,
    typer.Option(
        "--threads",
        help="torch CPU threads; 0: one per core (best for one job; use 1 per job when "
        "several run at once, README).",
    ),
]
PresetOpt = Annotated[str, typer.Option("--preset", help="tiny | quick | full")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress output.")]


def data_values(
    data: str | None,
    grid: int | None,
    coloring: str | None,
    rotation: str | None,
    style: str | None = None,
) -> dict[str, Any]:
    """The data options the user gave, as typed config values."""
    given = {
        "data": data,
        "grid": grid,
        "coloring": coloring,
        "rotation": rotation,
        "style": style,
    }
    return {k: v for k, v in given.items() if v is not None}


def table_console() -> Any:
    """A console for tables: the terminal's width, or 120 columns when output is piped (log
    files); tables are split to fit it (otzoo.report.metrics_tables)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=120)
