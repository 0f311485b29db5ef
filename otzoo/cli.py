"""The `otzoo` command line: list solvers, look at data, train, render, eval, judge info
(`compare`, `suite` and `bench` live in otzoo.cli_compare, the shared options in otzoo.cli_options).

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
data_app = typer.Typer(help="Look at the data a pair spec selects.", no_args_is_help=True)
app.add_typer(data_app, name="data")
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


@data_app.command("show")
def data_show(
    pair: Annotated[str, typer.Option("--pair", help="Pair spec, e.g. 3-5.")],
    out: Annotated[Path, typer.Option("--out", help="PNG file for the sample picture.")],
    data: DataOpt = None,
    grid: GridOpt = None,
    coloring: ColorOpt = None,
    rotation: RotOpt = None,
    style: StyleOpt = None,
    seed: SeedOpt = 0,
    n: Annotated[int, typer.Option("--n", help="Samples per row in the picture.")] = 8,
) -> None:
    """Counts per split and color, and a picture of source and target samples."""
    from rich.console import Console
    from rich.table import Table

    from otzoo.config import build_dataclass
    from otzoo.data import DataConfig, load_pair
    from otzoo.runtime import check_out_path
    from otzoo.viz import save_grid_png, save_scatter_png, views_for

    check_out_path(out, "--out", kind="file")
    cfg = build_dataclass(DataConfig, data_values(data, grid, coloring, rotation, style))
    pdata = load_pair(pair, cfg, seed=seed)
    vector = pdata.kind == "vector"
    what = (
        f"vectors, dim {pdata.x_shape[0]}"
        if vector
        else f"{cfg.data}, grid {cfg.grid}, {cfg.coloring}, rotation {cfg.rotation}"
    )
    table = Table(title=f"pair {pdata.spec.raw} ({what})")
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
            title=f"{pdata.spec.raw}: first two coordinates, arrows: true map",
            arrows=n,
        )
    else:
        path = save_grid_png(
            [pdata.x_test[:n], pdata.y_test[:n]],
            out,
            row_labels=[f"source {pdata.spec.source}", f"target {pdata.spec.target}"],
            views=views_for(cfg.rotation, cfg.style),
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


judge_app = typer.Typer(help="The judge classifiers behind the metrics.", no_args_is_help=True)
app.add_typer(judge_app, name="judge")


@judge_app.command("info")
def judge_info() -> None:
    """List cached judges ($OTZOO_CACHE/judges): key, data settings, test accuracy, date."""
    from rich.table import Table

    from otzoo.judge import cache_dir, list_judges

    folder = cache_dir()
    found = list_judges(folder)
    console = table_console()
    if not found:
        console.print(f"no cached judges in {folder}; `otzoo compare` trains one when needed")
        return
    table = Table(title=f"cached judges in {folder}")
    table.add_column("key", no_wrap=True, min_width=16)  # what `judge` files are named by
    for col in ("data", "rotation, style", "per digit", "seed", "test acc", "train s"):
        table.add_column(col, justify="right" if col in ("test acc", "train s") else "left")
    table.add_column("created", justify="right", no_wrap=True, min_width=16)
    for info in found:
        d = info.get("data", {})
        table.add_row(
            str(info.get("key")),
            f"{d.get('data')} {d.get('grid')}^3 {d.get('coloring')}",
            f"{d.get('rotation')}, {d.get('style', 'extruded')}",
            str(d.get("max_per_digit") or "all"),
            str(info.get("data_seed")),
            f"{float(info.get('test_accuracy', float('nan'))):.4f}",
            str(info.get("train_seconds")),
            str(info.get("created"))[:16],  # to the minute
        )
    console.print(table)


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
