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
    from otzoo.viz import save_grid_png

    cfg = build_dataclass(DataConfig, _data_values(data, grid, coloring, rotation))
    pdata = load_pair(pair, cfg, seed=seed)
    table = Table(
        title=f"pair {pair} ({cfg.data}, grid {cfg.grid}, {cfg.coloring}, rotation {cfg.rotation})"
    )
    counts = pdata.counts()
    columns = sorted({c for split in counts.values() for c in split})
    table.add_column("split")
    for c in columns:
        table.add_column(c, justify="right")
    for split, per_color in counts.items():
        table.add_row(split, *(str(per_color.get(c, 0)) for c in columns))
    Console().print(table)
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
