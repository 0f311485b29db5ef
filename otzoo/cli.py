"""The `otzoo` command line: list solvers, train, render, eval (`compare`, `suite` and `bench`
live in otzoo.cli_compare, `data show` and `judge info` in otzoo.cli_data, the shared options in
otzoo.cli_options).

Every user mistake surfaces as one line on stderr and exit status 2 (see `main`), never as a
traceback, and is detected before anything is written.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from otzoo import __version__
from otzoo.cli_compare import bench_app, compare, suite
from otzoo.cli_data import data_app, judge_app
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
    SolverOpt,
    StyleOpt,
    ThreadsOpt,
    data_values,
    table_console,
    torch_threads,
)
from otzoo.errors import ConfigError, OtzooError

app = typer.Typer(
    help="otzoo: neural optimal transport solvers on 3D data, trained and compared one way.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(judge_app, name="judge")
app.command()(compare)
app.command()(suite)
app.add_typer(bench_app, name="bench")


def _version(value: bool) -> None:
    if value:
        print(f"otzoo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """otzoo: neural optimal transport solvers on 3D data, trained and compared one way."""


@app.command()
def solvers(
    keys: Annotated[
        str | None, typer.Option("--keys", help="Show the config keys of one solver.")
    ] = None,
    preset: Annotated[
        str, typer.Option("--preset", help="With --keys: the preset whose values to show.")
    ] = "quick",
    pair: Annotated[
        str, typer.Option("--pair", help="With --keys: the pair to resolve for.")
    ] = "3-5",
) -> None:
    """List registered solvers (id, summary, tags), or one solver's keys with the values a run
    with that preset and pair would use."""
    from rich.console import Console
    from rich.table import Table

    from otzoo.config import config_fields, describe_keys, resolve
    from otzoo.registry import failed_plugins, get_solver, list_solvers

    console = Console()
    if keys:
        cls = get_solver(keys)
        run = resolve(cls, pair, preset)
        values = {**dataclasses.asdict(run.data), **dataclasses.asdict(run.train)}
        values.update(dataclasses.asdict(run.solver_config))
        help_text = describe_keys(cls)
        table = Table(title=f"{keys}: keys and their values with --preset {preset} --pair {pair}")
        for col in ("key", "section", "value", "meaning"):
            table.add_column(col, overflow="fold")
        for key, (section, _typ) in config_fields(cls).items():
            table.add_row(key, section, repr(values[key]), help_text.get(key, ""))
        console.print(table)
        console.print("set any of them with --set key=value")
        return
    table = Table(title="otzoo solvers")
    for col in ("id", "summary", "tags"):
        table.add_column(col, overflow="fold")
    for sid in list_solvers():
        cls = get_solver(sid)
        table.add_row(sid, cls.summary, ", ".join(sorted(cls.tags)))
    console.print(table)
    for name, why in failed_plugins().items():
        console.print(f"[yellow]plugin {name!r} failed to load: {why}[/yellow]")


@app.command()
def train(
    solver: SolverOpt = None,
    pair: PairOpt = None,
    data: DataOpt = None,
    grid: GridOpt = None,
    coloring: ColorOpt = None,
    rotation: RotOpt = None,
    style: StyleOpt = None,
    preset: PresetOpt = "quick",
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
    init_from: Annotated[
        Path | None,
        typer.Option(
            "--init-from",
            help="Warm start: begin from the final networks of this run folder (same solver and "
            "shapes; data options may differ; fresh optimizer, step 0).",
        ),
    ] = None,
    threads: ThreadsOpt = DEFAULT_THREADS,
    quiet: QuietOpt = False,
) -> None:
    """Train one solver on one pair; writes config.json, ckpt/, tb/ and metrics.json."""
    from rich.console import Console

    from otzoo.config import parse_overrides, resolve
    from otzoo.registry import get_solver
    from otzoo.runs import plan_resume
    from otzoo.train import train as run_training

    console = Console()
    if resume:
        if out is None:
            raise ConfigError("--resume needs --out DIR, the run folder to continue")
        extra = [n for n, v in (("--set", sets), ("--preset", preset != "quick" or None)) if v]
        extra += ["--init-from"] if init_from is not None else []
        extra += [n for n, v in data_values(data, grid, coloring, rotation, style).items() if v]
        if extra:
            raise ConfigError(
                f"--resume continues the stored config; drop {', '.join(extra)} "
                "(only --steps and --device may change)"
            )
        run = plan_resume(out, solver, pair, steps, device).run
    else:
        if solver is None or pair is None:
            raise ConfigError(
                "train needs --solver ID and --pair SPEC (e.g. --solver not --pair 3-5)"
            )
        cls = get_solver(solver)
        values = data_values(data, grid, coloring, rotation, style)
        values.update(parse_overrides(list(sets or []), cls))
        values.update({k: v for k, v in (("steps", steps), ("device", device)) if v is not None})
        run = resolve(cls, pair, preset, values, seed=seed)
        if init_from is not None:  # checked (solver, checkpoint, shapes) by train, before writing
            run = dataclasses.replace(run, init_from=str(init_from.absolute()))
        if out is None:
            name = run.pair.replace(":", "-")
            out = Path("runs") / f"{solver}_{name}_{time.strftime('%Y%m%d-%H%M%S')}"
    with torch_threads(threads):
        result = run_training(run, out, resume=resume, show_progress=not quiet)
    if result.interrupted:
        console.print(
            f"interrupted at step {result.steps}; checkpoint saved; continue with --resume --out {out}"
        )
        raise typer.Exit(128 + result.interrupted)  # 130 for Ctrl-C, 143 for SIGTERM
    shown = ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items())
    warm = f" (warm-started from {run.init_from})" if run.init_from else ""
    console.print(f"done: {result.steps} steps -> {out}{warm}\n{shown}")


@app.command()
def render(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `otzoo train`.")],
    out: Annotated[Path, typer.Option("--out", help="PNG file.")],
    n: Annotated[int, typer.Option("--n", help="How many random test inputs.")] = 5,
    seed: SeedOpt = 0,
    device: Annotated[str, typer.Option("--device")] = "cpu",
    threads: ThreadsOpt = DEFAULT_THREADS,
) -> None:
    """A picture of n random test inputs (top row) above their maps (bottom row)."""
    import torch

    from otzoo.evaluate import apply_map
    from otzoo.runs import load_run
    from otzoo.runtime import check_out_path
    from otzoo.viz import save_grid_png, views_for

    check_out_path(out, "--out", kind="file")
    if n < 1:
        raise ConfigError(f"--n {n}: use a positive number of inputs")
    with torch_threads(threads):
        run, solver, data = load_run(run_dir, device=device)
        if data.kind != "voxel":
            raise ConfigError(
                f"{run_dir}: render draws voxel data; pair {run.pair} is {data.kind} data"
            )
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(data.x_test), generator=g)[:n]
        x = data.x_test[idx]
        tx = apply_map(solver, x)
        rows, labels = [x.cpu(), tx.cpu()], ["input", run.solver]
        path = save_grid_png(
            rows, out, row_labels=labels, views=views_for(run.data.rotation, run.data.style)
        )
    print(f"picture: {path}")


@app.command("eval")
def eval_run(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `otzoo train`.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the metrics to this JSON file.")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda")] = "cpu",
    threads: ThreadsOpt = DEFAULT_THREADS,
) -> None:
    """Score one finished run with the comparison's metrics and print the table."""
    import json

    from otzoo.evaluate import evaluate_run, quality_warnings
    from otzoo.report import json_safe, metrics_tables
    from otzoo.runtime import atomic_write_json, check_out_path

    if out is not None:
        check_out_path(out, "--out", kind="file")
    console = table_console()
    with torch_threads(threads):
        run, rows, judge = evaluate_run(run_dir, device=device, log=console.print)
    title = f"otzoo eval {run_dir} ({run.solver}, pair {run.pair})"
    for table in metrics_tables(rows, title, console.width):
        console.print(table)
    for warning in quality_warnings(rows, judge):
        console.print(f"[yellow]warning: {warning}[/yellow]")
    if out is not None:
        payload = json_safe(
            {
                "run": str(run_dir),
                "solver": run.solver,
                "pair": run.pair,
                "metrics": rows[run.solver],
                "references": {k: v for k, v in rows.items() if k != run.solver},
                "judge": None
                if judge is None
                else {"key": judge.key, "test_accuracy": judge.accuracy},
            }
        )
        try:
            atomic_write_json(out, payload)
        except OSError as err:  # never lose what was computed: print it whole
            print(json.dumps(payload, indent=2))
            raise OtzooError(
                f"--out {out}: could not be written ({err.strerror}); the metrics are printed above"
            ) from None
        console.print(f"metrics: {out}")


def _click_error(name: str) -> type[Exception]:
    """typer's (possibly vendored) click exception class of that name, found through a public
    typer class, so this works whichever click typer carries."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit status 2."""
    usage_error = _click_error("UsageError")
    try:
        code = app(standalone_mode=False)
    except OtzooError as err:
        print(f"otzoo: error: {err}", file=sys.stderr)
        sys.exit(2)
    except usage_error as err:  # unknown option, missing value, bad type
        if type(err).__name__ == "NoArgsIsHelpError":  # a bare command: its help
            print(err.format_message())
            sys.exit(0)
        ctx = getattr(err, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        message = " ".join(err.format_message().split())
        print(f"otzoo: error: {message}{hint}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:  # the machine refused a read or write (disk full, permissions)
        where = f"{err.filename}: " if err.filename else ""
        print(
            f"otzoo: error: {where}{err.strerror or err}; check the disk and the path",
            file=sys.stderr,
        )
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        print("otzoo: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
