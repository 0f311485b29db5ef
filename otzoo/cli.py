"""The `otzoo` command line: list solvers, look at data, train, render.

Every user mistake surfaces as one line on stderr and a non-zero exit (see `main`), never as
a traceback, and is detected before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from otzoo.errors import ConfigError, OtzooError

app = typer.Typer(
    help="otzoo: neural optimal transport solvers on 3D data, trained and compared one way.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Look at the data a pair spec selects.", no_args_is_help=True)
app.add_typer(data_app, name="data")

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
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for data split, init and batches.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set lr_t=3e-4 (repeatable)."),
]


def _data_values(
    data: str | None, grid: int | None, coloring: str | None, rotation: str | None
) -> dict[str, Any]:
    given = {"data": data, "grid": grid, "coloring": coloring, "rotation": rotation}
    return {k: v for k, v in given.items() if v is not None}


@app.command()
def solvers(
    keys: Annotated[
        str | None, typer.Option("--keys", help="Show the config keys of one solver.")
    ] = None,
) -> None:
    """List registered solvers (id, summary, tags), or one solver's settable keys."""
    from rich.console import Console
    from rich.table import Table

    from otzoo.config import config_fields
    from otzoo.registry import failed_plugins, get_solver, list_solvers

    console = Console()
    if keys:
        cls = get_solver(keys)
        table = Table(title=f"config keys of {keys} (set with --set key=value)")
        for col in ("key", "section", "type", "default"):
            table.add_column(col)
        defaults: dict[str, Any] = {}
        from otzoo.config import TrainConfig
        from otzoo.data import DataConfig

        for obj in (DataConfig(), TrainConfig(), cls.Config()):
            defaults.update(dataclasses.asdict(obj))
        for key, (section, typ) in config_fields(cls).items():
            table.add_row(key, section, getattr(typ, "__name__", str(typ)), repr(defaults[key]))
        console.print(table)
        return
    table = Table(title="otzoo solvers")
    for col in ("id", "summary", "tags"):
        table.add_column(col)
    for sid in list_solvers():
        cls = get_solver(sid)
        table.add_row(sid, cls.summary, ", ".join(sorted(cls.tags)))
    console.print(table)
    for name, why in failed_plugins().items():
        console.print(f"[yellow]plugin {name!r} failed to import: {why}[/yellow]")


@data_app.command("show")
def data_show(
    pair: Annotated[str, typer.Option("--pair", help="Pair spec, e.g. 3-5.")],
    out: Annotated[Path, typer.Option("--out", help="PNG file for the sample picture.")],
    data: DataOpt = None,
    grid: GridOpt = None,
    coloring: ColorOpt = None,
    rotation: RotOpt = None,
    seed: SeedOpt = 0,
    n: Annotated[int, typer.Option("--n", help="Samples per row in the picture.")] = 8,
) -> None:
    """Counts per split and color, and a picture of source and target samples."""
    from rich.console import Console
    from rich.table import Table

    from otzoo.config import build_dataclass
    from otzoo.data import DataConfig, load_pair
    from otzoo.viz import save_grid_png, save_scatter_png

    cfg = build_dataclass(DataConfig, _data_values(data, grid, coloring, rotation))
    pdata = load_pair(pair, cfg, seed=seed)
    vector = pdata.kind == "vector"
    what = (
        f"vectors, dim {pdata.x_shape[0]}"
        if vector
        else f"{cfg.data}, grid {cfg.grid}, {cfg.coloring}, rotation {cfg.rotation}"
    )
    table = Table(title=f"pair {pair} ({what})")
    counts = pdata.counts()
    columns = sorted({c for split in counts.values() for c in split})
    table.add_column("split")
    for c in columns:
        table.add_column(c, justify="right")
    for split, per_color in counts.items():
        table.add_row(split, *(str(per_color.get(c, 0)) for c in columns))
    Console().print(table)
    if vector:  # a scatter of the first two coordinates, arrows along the known map
        path = save_scatter_png(
            pdata.x_test[:512],
            pdata.y_test[:512],
            out,
            mapped=pdata.extras.get("x_test_true_map", None),
            title=f"{pair}: first two coordinates, arrows: true map",
            arrows=n,
        )
    else:
        path = save_grid_png(
            [pdata.x_test[:n], pdata.y_test[:n]],
            out,
            row_labels=[f"source {pdata.spec.source}", f"target {pdata.spec.target}"],
        )
    Console().print(f"picture: {path}")


@app.command()
def train(
    solver: SolverOpt = None,
    pair: PairOpt = None,
    data: DataOpt = None,
    grid: GridOpt = None,
    coloring: ColorOpt = None,
    rotation: RotOpt = None,
    preset: Annotated[str, typer.Option("--preset", help="tiny | quick | full")] = "quick",
    steps: Annotated[int | None, typer.Option("--steps", help="Outer steps (total).")] = None,
    sets: SetOpt = None,
    device: Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda")] = None,
    seed: SeedOpt = 0,
    out: Annotated[
        Path | None, typer.Option("--out", help="Run folder (default runs/<solver>_<pair>_<time>).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its latest checkpoint.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Train one solver on one pair; writes config.json, ckpt/, tb/ and metrics.json."""
    from rich.console import Console

    from otzoo.config import RunConfig, parse_overrides, resolve
    from otzoo.registry import get_solver
    from otzoo.runtime import resolve_device
    from otzoo.train import train as run_training

    console = Console()
    if resume:
        if out is None:
            raise ConfigError("--resume needs --out DIR, the run folder to continue")
        cfg_path = out / "config.json"
        if not cfg_path.is_file():
            raise ConfigError(
                f"{out}: no run to resume (no config.json); drop --resume or fix --out"
            )
        raw = json.loads(cfg_path.read_text())
        run = RunConfig.from_dict(raw, get_solver(raw.get("solver", "?")))
        for name, given, have in (("--solver", solver, run.solver), ("--pair", pair, run.pair)):
            if given is not None and given != have:
                raise ConfigError(
                    f"{name} {given} differs from the run in {out} ({have}); drop {name}"
                )
        new_train = run.train
        if steps is not None:
            new_train = replace(new_train, steps=steps)
        if device is not None:
            new_train = replace(new_train, device=device)
        run = replace(run, train=new_train)
    else:
        if solver is None or pair is None:
            raise ConfigError(
                "train needs --solver ID and --pair SPEC (e.g. --solver not --pair 3-5)"
            )
        from otzoo.data import parse_pair

        parse_pair(pair)
        cls = get_solver(solver)
        items = [f"{k}={v}" for k, v in _data_values(data, grid, coloring, rotation).items()]
        items += list(sets or [])
        if steps is not None:
            items.append(f"steps={steps}")
        if device is not None:
            items.append(f"device={device}")
        run = resolve(cls, pair, preset, parse_overrides(items, cls), seed=seed)
        if out is None:
            out = Path("runs") / f"{solver}_{pair}_{time.strftime('%Y%m%d-%H%M%S')}"
    resolve_device(run.train.device)
    result = run_training(run, out, resume=resume, show_progress=not quiet)
    if "interrupted" in result.metrics:
        console.print(
            f"interrupted at step {result.steps}; checkpoint saved; continue with --resume --out {out}"
        )
        raise typer.Exit(130)
    shown = ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items())
    console.print(f"done: {result.steps} steps -> {out}\n{shown}")


@app.command()
def render(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `otzoo train`.")],
    out: Annotated[Path, typer.Option("--out", help="PNG file.")],
    n: Annotated[int, typer.Option("--n", help="How many random test inputs.")] = 5,
    seed: SeedOpt = 0,
    device: Annotated[str, typer.Option("--device")] = "cpu",
) -> None:
    """A picture of n random test inputs (top row) above their maps (bottom row)."""
    import torch

    from otzoo.train import load_run, map_in_batches
    from otzoo.viz import save_grid_png

    run, solver, data = load_run(run_dir, device=device)
    if data.kind != "voxel":
        raise ConfigError(
            f"{run_dir}: render draws voxel data; pair {run.pair} is {data.kind} data"
        )
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.x_test), generator=g)[:n]
    x = data.x_test[idx].to(solver.device)
    tx = map_in_batches(solver, x)
    path = save_grid_png([x.cpu(), tx.cpu()], out, row_labels=["input", run.solver])
    print(f"picture: {path}")


bench_app = typer.Typer(help="Benchmarks with known answers.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("w2")
def bench_w2(
    solvers: Annotated[str, typer.Option("--solvers", help="Comma-separated ids, e.g. not,otm.")],
    dims: Annotated[str, typer.Option("--dims", help="Dimensions, e.g. 2,4,8,16,32.")] = "2,4,8",
    weights: Annotated[
        Path | None,
        typer.Option("--weights", help="w2bench-mix3tomix10 folder (default: $OTZOO_W2BENCH_DIR)."),
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Outer steps per cell.")] = None,
    time_budget: Annotated[
        float | None, typer.Option("--time-budget", help="Training wall minutes per cell (cap).")
    ] = None,
    seed: SeedOpt = 0,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default runs/bench_w2_<time>).")
    ] = None,
    sets: SetOpt = None,
    threads: Annotated[
        int, typer.Option("--threads", help="torch CPU threads (small nets: 1 is fastest).")
    ] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Train vector solvers on the W2 benchmark pairs; UVP table, report.md, uvp.png."""
    import os
    import shlex

    from otzoo.bench import parse_dims, run_w2_bench
    from otzoo.registry import parse_solver_list

    if weights is None:
        env = os.environ.get("OTZOO_W2BENCH_DIR", "").strip()
        if not env:
            raise ConfigError(
                "bench w2 needs --weights DIR, the w2bench-mix3tomix10 folder "
                "(or set OTZOO_W2BENCH_DIR)"
            )
        weights = Path(env)
    if out is None:
        out = Path("runs") / f"bench_w2_{time.strftime('%Y%m%d-%H%M%S')}"
    command = "otzoo " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    run_w2_bench(
        parse_solver_list(solvers),
        parse_dims(dims),
        weights,
        out,
        steps=steps,
        time_budget_min=time_budget,
        seed=seed,
        sets=list(sets or []),
        command=command,
        show_progress=not quiet,
        threads=threads,
    )


def _table_console() -> Any:
    """A console for wide tables: the terminal's width, or 200 columns when output is piped."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


@app.command()
def compare(
    solvers: Annotated[
        str | None, typer.Option("--solvers", help="Comma-separated ids to train, e.g. not,otm.")
    ] = None,
    pair: PairOpt = None,
    data: DataOpt = None,
    grid: GridOpt = None,
    coloring: ColorOpt = None,
    rotation: RotOpt = None,
    preset: Annotated[str, typer.Option("--preset", help="tiny | quick | full")] = "quick",
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
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads", help="torch CPU threads (small nets on a busy CPU: 1 is fastest)."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Train solvers on the same data and seed and judge them all the same way.

    Writes report.md, metrics.json, metrics.csv, samples.png and tb/<solver> under --out.
    """
    from otzoo.compare import CompareRequest
    from otzoo.compare import compare as run_compare
    from otzoo.evaluate import metrics_table

    console = _table_console()
    items = [f"{k}={v}" for k, v in _data_values(data, grid, coloring, rotation).items()]
    if out is None:
        name = (pair or "runs").replace(":", "-")
        out = Path("runs") / f"compare_{name}_{time.strftime('%Y%m%d-%H%M%S')}"
    req = CompareRequest(
        out=out,
        solvers=tuple(s for s in (solvers or "").split(",") if s.strip()),
        pair=pair,
        preset=preset,
        sets=tuple(items + list(sets or [])),
        steps=steps,
        seed=seed,
        device=device,
        from_runs=tuple(from_runs or []),
        show_progress=not quiet,
        threads=threads,
    )
    if solvers is not None and not req.solvers:
        raise ConfigError("--solvers is empty; pass a comma-separated list such as not,otm")
    result = run_compare(req, log=console.print)
    console.print(metrics_table(result.rows, f"otzoo compare: pair {result.pair}"))
    for name, note in result.notes.items():
        console.print(f"[yellow]{name}: {note}[/yellow]")
    console.print(f"report: {out / 'report.md'}")


@app.command("eval")
def eval_run(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `otzoo train`.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the metrics to this JSON file.")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda")] = "cpu",
) -> None:
    """Score one finished run with the comparison's metrics and print the table."""
    from otzoo.evaluate import evaluate_run, json_safe, metrics_table
    from otzoo.runtime import atomic_write_json

    console = _table_console()
    run, rows, judge = evaluate_run(run_dir, device=device, log=console.print)
    console.print(metrics_table(rows, f"otzoo eval {run_dir} ({run.solver}, pair {run.pair})"))
    if out is not None:
        payload = {
            "run": str(run_dir),
            "solver": run.solver,
            "pair": run.pair,
            "metrics": rows[run.solver],
            "references": {k: v for k, v in rows.items() if k != run.solver},
            "judge": None if judge is None else {"key": judge.key, "test_accuracy": judge.accuracy},
        }
        atomic_write_json(out, json_safe(payload))
        console.print(f"metrics: {out}")


judge_app = typer.Typer(help="The judge classifiers behind the metrics.", no_args_is_help=True)
app.add_typer(judge_app, name="judge")


@judge_app.command("info")
def judge_info() -> None:
    """List cached judges ($OTZOO_CACHE/judges): key, data settings, test accuracy, date."""
    from rich.table import Table

    from otzoo.judge import cache_dir, list_judges

    folder = cache_dir()
    found = list_judges(folder)
    console = _table_console()
    if not found:
        console.print(f"no cached judges in {folder}; `otzoo compare` trains one when needed")
        return
    table = Table(title=f"cached judges in {folder}")
    for col in ("key", "data", "grid", "coloring", "rotation", "per digit", "seed"):
        table.add_column(col)
    for col in ("test acc", "train s", "created"):
        table.add_column(col, justify="right")
    for info in found:
        d = info.get("data", {})
        table.add_row(
            str(info.get("key")),
            str(d.get("data")),
            str(d.get("grid")),
            str(d.get("coloring")),
            str(d.get("rotation")),
            str(d.get("max_per_digit") or "all"),
            str(info.get("data_seed")),
            f"{float(info.get('test_accuracy', float('nan'))):.4f}",
            str(info.get("train_seconds")),
            str(info.get("created")),
        )
    console.print(table)


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except OtzooError as err:
        print(f"otzoo: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("otzoo: interrupted", file=sys.stderr)
        sys.exit(130)
