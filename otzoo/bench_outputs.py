"""What `otzoo bench w2` writes and prints: the UVP table beside the published one (terminal,
Markdown), each cell's cost, the settings, uvp.json / results.json, and the UVP plot."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otzoo.data.benchmarks import BEST_PUBLISHED, PUBLISHED
from otzoo.evaluate import UVP_SAMPLES, UVP_SEED
from otzoo.report import markdown
from otzoo.runtime import atomic_write_bytes, atomic_write_json
from otzoo.viz import save_figure_png

if TYPE_CHECKING:
    from otzoo.bench import BenchResult, Cell

FIT_SAMPLES = 2**14  # samples of P and Q the [L] baseline is fitted on


def _fmt(v: float | None) -> str:
    return "diverged" if v is None else f"{v:.3g}"


def uvp_table(result: BenchResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows: measured solvers, measured baselines, then the published table."""
    dims = sorted({c.dim for c in result.cells} | set(result.baselines["[ID]"]))
    by = {(c.solver, c.dim): c for c in result.cells}
    rows = []
    for sid in dict.fromkeys(c.solver for c in result.cells):
        rows.append([sid, *(_fmt(by[sid, d].uvp) if (sid, d) in by else "-" for d in dims)])
    for name, per in result.baselines.items():
        rows.append(
            [f"{name} measured", *(_fmt(per[d]["l2_uvp"]) if d in per else "-" for d in dims)]
        )
    for name, per in {"best published": BEST_PUBLISHED, **PUBLISHED}.items():
        label = name if name == "best published" else f"{name} (published)"
        rows.append([label, *(f"{per[d]:g}" if d in per else "-" for d in dims)])
    return ["solver", *(str(d) for d in dims)], rows


def rich_table(result: BenchResult) -> tuple[Any, str]:
    """The UVP table for the terminal (published rows by their short tags) and its legend."""
    from rich.table import Table

    header, rows = uvp_table(result)
    table = Table(title="W2 Mix3toMix10: forward L2-UVP (%), lower is better", title_justify="left")
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if i == 0 else "right", no_wrap=True)
    n_ours = len({c.solver for c in result.cells})
    for i, row in enumerate(rows):
        label = (
            row[0].split(" ")[0] if row[0].startswith("[") and "measured" not in row[0] else row[0]
        )
        table.add_row(label, *row[1:], end_section=i in (n_ours - 1, n_ours + 1))
    legend = "published rows: " + "; ".join(n for n in PUBLISHED)
    return table, legend


CELL_HEADER = ["solver", "dim", "UVP", "cosine", "steps", "wall min", "CPU min", "status"]


def _cell_row(c: Cell) -> list[str]:
    cos = "-" if c.cosine is None else f"{c.cosine:.4f}"
    minutes = [f"{c.wall_s / 60:.2f}", f"{c.cpu_s / 60:.2f}"]
    return [c.solver, str(c.dim), _fmt(c.uvp), cos, str(c.steps), *minutes, c.status]


def report_markdown(result: BenchResult) -> str:
    """report.md: the table, every cell's cost and status, the settings, and how it was run."""
    cpu_total = sum(c.cpu_s for c in result.cells) / 60
    head = (
        f"Command: `{result.command}`  \nSeed: {result.seed}  \nMachine: {result.machine}  \n"
        f"Training CPU time, all cells: {cpu_total:.2f} min"
    )
    scoring = (
        f"Scores: L2-UVP = 100 E||T(x) - T*(x)||^2 / Var(Q) and cosine on {UVP_SAMPLES} fresh "
        f"samples of P (seed {UVP_SEED}), the same draw for every row; [L] is fitted on "
        f"{FIT_SAMPLES} samples of P and Q. Training draws fresh batches of P and Q every step."
    )
    settings = [f"- `{c.solver}` dim {c.dim}: `{c.settings}`" for c in result.cells]
    parts = [
        "# W2 benchmark (Mix3toMix10): forward L2-UVP (%)",
        head,
        scoring,
        "## L2-UVP (%), lower is better",
        markdown(*uvp_table(result)),
        "## Cells",
        markdown(CELL_HEADER, [_cell_row(c) for c in result.cells]),
        "## Settings (the solver's vector defaults and --set, over its quick preset)",
        "\n".join(settings),
    ]
    return "\n\n".join(parts) + "\n"


def plot_uvp(result: BenchResult, path: Path) -> Path:
    """UVP vs dimension, log-log: one line per solver, the best published, [ID] and [L]."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    ax = fig.add_subplot()
    for sid in dict.fromkeys(c.solver for c in result.cells):
        pts = [(c.dim, c.uvp) for c in result.cells if c.solver == sid and c.uvp is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", label=sid)
    dims = sorted(result.baselines["[ID]"])
    best = [(d, BEST_PUBLISHED[d]) for d in dims if d in BEST_PUBLISHED]
    if best:
        ax.plot(*zip(*best, strict=True), "k--", marker="*", label="best published")
    for name, style in (("[ID]", "s:"), ("[L]", "^:")):
        per = result.baselines[name]
        ax.plot(dims, [per[d]["l2_uvp"] for d in dims], style, color="gray", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.set_xlabel("dimension")
    ax.set_ylabel("forward L2-UVP (%)")
    ax.set_title("W2 benchmark Mix3toMix10")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure_png(fig, path)


def write_outputs(result: BenchResult, out: Path) -> None:
    """uvp.json ({solver: {dim: uvp}}), results.json (everything), report.md, uvp.png."""
    uvp: dict[str, dict[str, float | None]] = {}
    for c in result.cells:
        uvp.setdefault(c.solver, {})[str(c.dim)] = c.uvp
    atomic_write_json(out / "uvp.json", uvp)
    full = asdict(result)
    full["baselines"] = {
        k: {str(d): v for d, v in per.items()} for k, per in result.baselines.items()
    }
    atomic_write_json(out / "results.json", full)
    atomic_write_bytes(out / "report.md", report_markdown(result).encode())
    plot_uvp(result, out / "uvp.png")
