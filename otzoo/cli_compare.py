"""`otzoo compare` (solvers side by side on one pair), `otzoo suite` (a leaderboard of compares
over pairs and data variants) and `otzoo bench w2` (the known-map benchmark): the commands that
train several solvers and write one report."""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from otzoo.cli_options import (
    DEFAULT_THREADS,
    ColorOpt,
    DataOpt,
    GridOpt,
    PairOpt,
    PresetOpt,
    QuietOpt,
    RotOpt,
    SeedOpt,
    SetOpt,
    StyleOpt,
    ThreadsOpt,
    data_values,
    table_console,
    torch_threads,
)
from otzoo.errors import ConfigError

bench_app = typer.Typer(help="Benchmarks with known answers.", no_args_is_help=True)


def compare(
    solvers: Annotated[
        str | None, typer.Option("--solvers", help="Comma-separated ids to train, e.g. not,otm.")
    ] = None,
    pair: PairOpt = None,
    data: DataOpt = None,
    grid: GridOpt = None,
    coloring: ColorOpt = None,
    rotation: RotOpt = None,
    style: StyleOpt = None,
    preset: PresetOpt = "quick",
    steps: Annotated[int | None, typer.Option("--steps", help="Outer steps per solver.")] = None,
    sets: SetOpt = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed for data split, init and batches (0).")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda")] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output folder (default runs/compare_<pair>_<time>)."),
    ] = None,
    from_runs: Annotated[
        list[Path] | None,
        typer.Option("--from", help="Reuse a finished run folder of `otzoo train` (repeatable)."),
    ] = None,
    init_from: Annotated[
        list[Path] | None,
        typer.Option(
            "--init-from",
            help="Warm start: a run folder of one of --solvers; that solver begins from its final "
            "networks (repeatable, one per solver).",
        ),
    ] = None,
    threads: ThreadsOpt = DEFAULT_THREADS,
    quiet: QuietOpt = False,
) -> None:
    """Train solvers on the same data and seed and judge them all the same way.

    Writes report.md, metrics.json, metrics.csv, samples.png and tb/<solver> under --out.
    """
    from otzoo.compare import CompareRequest
    from otzoo.compare import compare as run_compare
    from otzoo.report import metrics_tables

    console = table_console()
    values = data_values(data, grid, coloring, rotation, style)
    values.update({k: v for k, v in (("steps", steps), ("device", device)) if v is not None})
    if out is None:
        name = (pair or "runs").strip().replace(":", "-")
        out = Path("runs") / f"compare_{name}_{time.strftime('%Y%m%d-%H%M%S')}"
    if solvers is not None and not solvers.strip(" ,"):
        raise ConfigError("--solvers is empty; pass a comma-separated list such as not,otm")
    req = CompareRequest(
        out=out,
        solvers=tuple(s.strip() for s in (solvers or "").split(",") if s.strip()),
        pair=pair,
        preset=preset,
        values=values,
        sets=tuple(sets or []),
        seed=seed,
        from_runs=tuple(from_runs or []),
        init_from=tuple(init_from or []),
        show_progress=not quiet,
        threads=threads,
    )
    result = run_compare(req, log=console.print)
    for table in metrics_tables(result.rows, f"otzoo compare: pair {result.pair}", console.width):
        console.print(table)
    for name, note in result.notes.items():
        console.print(f"[yellow]{name}: {note}[/yellow]")
    console.print(f"report: {out / 'report.md'}")


def suite(
    solvers: Annotated[
        str, typer.Option("--solvers", help="Comma-separated ids to train, e.g. not,pot-sinkhorn.")
    ],
    pairs: Annotated[
        str, typer.Option("--pairs", help="Comma-separated pair specs, e.g. 3-5,2-4.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Suite folder; the same command again resumes it.")
    ],
    rotation: Annotated[
        str, typer.Option("--rotation", help="Comma-separated rotations: none,z,3d.")
    ] = "none",
    style: Annotated[
        str, typer.Option("--style", help="Comma-separated styles: extruded,pointcloud.")
    ] = "extruded",
    preset: PresetOpt = "quick",
    steps: Annotated[int | None, typer.Option("--steps", help="Outer steps per solver.")] = None,
    sets: SetOpt = None,
    seed: SeedOpt = 0,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda")] = "auto",
    threads: ThreadsOpt = DEFAULT_THREADS,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            help="Cells run at once, each in its own process, one line per cell instead of "
            "progress bars (1: one after another). On a 2-core CPU use --jobs 2 --threads 1: two "
            "one-thread cells at once each run about as fast as one alone, while one cell on 2 "
            "threads is only 1.8x faster.",
        ),
    ] = 1,
    quiet: QuietOpt = False,
) -> None:
    """One leaderboard over solvers x pairs x data variants: a `compare` per (pair, rotation,
    style) in OUT/cells/; finished cells are skipped when the command is run again.

    Writes leaderboard.md, leaderboard.csv, leaderboard.json and heatmap_<metric>.png in --out.
    """
    from otzoo.suite import SuiteRequest, run_suite, split_list
    from otzoo.suite_outputs import terminal_tables

    console = table_console()
    req = SuiteRequest(
        out=out,
        solvers=split_list(solvers, "--solvers"),
        pairs=split_list(pairs, "--pairs"),
        rotations=split_list(rotation, "--rotation"),
        styles=split_list(style, "--style"),
        preset=preset,
        sets=tuple(sets or []),
        seed=seed,
        steps=steps,
        device=device,
        show_progress=not quiet,
        threads=threads,
        jobs=jobs,
    )
    result = run_suite(req, log=console.print)
    for table in terminal_tables(result, console.width):
        console.print(table)
    console.print(f"leaderboard: {out / 'leaderboard.md'}")
    if result.failed:
        for name, why in result.failed.items():
            console.print(f"[red]cell {name} failed: {why}[/red]")
        print(
            f"otzoo: error: {len(result.failed)} of {len(result.cells)} cell(s) failed; "
            "rerun the same command to retry them",
            file=sys.stderr,
        )
        raise typer.Exit(1)


@bench_app.command("w2")
def bench_w2(
    solvers: Annotated[str, typer.Option("--solvers", help="Comma-separated ids, e.g. not,otm.")],
    dims: Annotated[
        str,
        typer.Option("--dims", help="Dimensions, e.g. 2,4,8; all: every dim in --weights."),
    ] = "all",
    weights: Annotated[
        Path | None,
        typer.Option("--weights", help="w2bench-mix3tomix10 folder (default: $OTZOO_W2BENCH_DIR)."),
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Outer steps per cell.")] = None,
    cpu_budget: Annotated[
        float | None,
        typer.Option(
            "--cpu-budget",
            help="CPU minutes of training steps per cell, at most; a cosine lr decay is "
            "fitted to end there when the steps would take longer.",
        ),
    ] = None,
    seed: SeedOpt = 0,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default runs/bench_w2_<time>).")
    ] = None,
    sets: SetOpt = None,
    threads: ThreadsOpt = DEFAULT_THREADS,
    quiet: QuietOpt = False,
) -> None:
    """Train vector solvers on the W2 benchmark pairs; UVP table, report.md, uvp.png."""
    from otzoo.bench import parse_dims, run_w2_bench
    from otzoo.data.vectors import W2_ENV
    from otzoo.registry import parse_solver_list

    if weights is None:
        env = os.environ.get(W2_ENV, "").strip()
        if not env:
            raise ConfigError(
                "bench w2 needs --weights DIR, the w2bench-mix3tomix10 folder of the W2 "
                f"benchmark (Korotin et al. 2021; see README), or set {W2_ENV}"
            )
        weights = Path(env)
    if out is None:
        out = Path("runs") / f"bench_w2_{time.strftime('%Y%m%d-%H%M%S')}"
    command = "otzoo " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with torch_threads(threads):
        run_w2_bench(
            parse_solver_list(solvers),
            parse_dims(dims, weights),
            weights,
            out,
            steps=steps,
            cpu_budget_min=cpu_budget,
            seed=seed,
            sets=list(sets or []),
            command=command,
            show_progress=not quiet,
        )
