"""`otzoo data show` and `otzoo judge info`: the commands that look at what the metrics rest on
(the data a pair spec selects, the cached judge classifiers) without training anything."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from otzoo.cli_options import (
    ColorOpt,
    DataOpt,
    GridOpt,
    RotOpt,
    SeedOpt,
    StyleOpt,
    data_values,
    table_console,
)

data_app = typer.Typer(help="Look at the data a pair spec selects.", no_args_is_help=True)
judge_app = typer.Typer(help="The judge classifiers behind the metrics.", no_args_is_help=True)


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


@judge_app.command("info")
def judge_info() -> None:
    """List cached judges ($OTZOO_CACHE/judges): key, data settings, test accuracy, the digits
    it gets most wrong (and what it takes them for), date."""
    from rich.table import Table

    from otzoo.judge import cache_dir, list_judges, weakest_digits

    folder = cache_dir()
    found = list_judges(folder)
    console = table_console()
    if not found:
        console.print(f"no cached judges in {folder}; `otzoo compare` trains one when needed")
        return
    table = Table(title=f"cached judges in {folder}")
    table.add_column("key", no_wrap=True, min_width=16)  # what `judge` files are named by
    for col in ("data", "rotation, style", "per digit", "seed", "test acc", "weakest (taken for)"):
        table.add_column(col, justify="right" if col == "test acc" else "left")
    table.add_column("train s", justify="right")
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
            weakest_digits(info),
            str(info.get("train_seconds")),
            str(info.get("created"))[:16],  # to the minute
        )
    console.print(table)
