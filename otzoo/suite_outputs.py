"""What a suite leaves behind besides its cells: leaderboard.md / .csv / .json (one row per
(cell, map), the reference rows included, the judge's own accuracy beside each) and one
heatmap per metric (otzoo.suite decides what runs; the table formats are otzoo.report's)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otzoo.evaluate import WEAK_JUDGE
from otzoo.report import (
    csv_table,
    format_value,
    json_safe,
    markdown,
    metrics_tables,
    table_columns,
)
from otzoo.runtime import atomic_write_bytes, atomic_write_json
from otzoo.viz import save_figure_png

if TYPE_CHECKING:
    from otzoo.suite import SuiteResult
    from otzoo.suite_cells import CellResult

LEADERBOARD_FORMAT = "otzoo-leaderboard-1"


def is_weak(accuracy: float | None) -> bool:
    """A judge below WEAK_JUDGE test accuracy (the threshold compare warns at): its cell's
    target accuracy and fid are unreliable. No judge (None) is not weak."""
    return accuracy is not None and not (math.isfinite(accuracy) and accuracy >= WEAK_JUDGE)


def judge_label(accuracy: float | None) -> str:
    """'0.9512', '0.8731 (weak)', or '-' when no judge applies to the cell."""
    if accuracy is None:
        return "-"
    return format_value(accuracy) + (" (weak)" if is_weak(accuracy) else "")


def _all_rows(result: SuiteResult) -> dict[str, dict[str, float]]:
    """Every (cell, map) row under a unique key, for the column choice of report.table_columns."""
    return {f"{r.cell.name}/{name}": m for r in result.results for name, m in r.rows.items()}


def _kind(r: CellResult, name: str) -> str:
    return "solver" if name in r.solver_names else "reference"


def leaderboard_markdown(result: SuiteResult, heatmaps: list[str]) -> str:
    """leaderboard.md: warnings, the table (cell, map, judge, metrics), failed cells, pictures."""
    cols = table_columns(_all_rows(result))
    body = [
        [r.cell.name, name, judge_label(r.judge_accuracy), *(format_value(m.get(c)) for c in cols)]
        for r in result.results
        for name, m in r.rows.items()
    ]
    parts = [
        "# otzoo suite: leaderboard\n",
        f"Written {time.strftime('%Y-%m-%d %H:%M:%S')}. {settings_line(result.settings)}.\n",
    ]
    weak_cells = [r.cell.name for r in result.results if is_weak(r.judge_accuracy)]
    if weak_cells:
        parts.append(
            f"> **Warning**: the judge of {', '.join(weak_cells)} has a test accuracy below "
            f"{WEAK_JUDGE:.2f} (marked `(weak)`): their target accuracy, worst color accuracy "
            "and fid are unreliable.\n"
        )
    if result.failed:
        parts.append(
            f"> **Warning**: {len(result.failed)} cell(s) failed (listed below); rerun the same "
            "command to retry them.\n"
        )
    parts += [
        "## Leaderboard\n",
        markdown(["cell", "map", "judge", *cols], body),
        "A cell is one `otzoo compare` (pair, rotation, style) in `cells/<cell>/` (its "
        "report.md, samples.png, runs). `judge`: the test accuracy of the judge that scored the "
        f"cell (all ten digits, that cell's data); `(weak)` below {WEAK_JUDGE:.2f}. `identity` "
        "and `real target` are references: the identity map, and real target test samples "
        "taken as outputs. `-`: the metric does not apply; `nan`: outputs were not finite.\n",
    ]
    notes = [
        f"- **{r.cell.name} / {name}**: {note}"
        for r in result.results
        for name, note in r.notes.items()
    ]
    if notes:
        parts += ["## Notes\n", *notes, ""]
    if result.failed:
        parts += ["## Failed cells\n", *(f"- **{k}**: {v}" for k, v in result.failed.items()), ""]
    if heatmaps:
        parts += ["## Heatmaps\n", *(f"![{Path(h).stem}]({h})\n" for h in heatmaps)]
    return "\n".join(parts) + "\n"


def settings_line(settings: dict[str, Any]) -> str:
    """The suite's settings in one sentence (the judge's own config stays in suite.json)."""
    shown = {k: v for k, v in settings.items() if k != "judge" and v not in (None, [])}
    return "; ".join(
        f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in shown.items()
    )


def leaderboard_csv(result: SuiteResult) -> str:
    """leaderboard.csv with full precision: the cell's axes, map, kind, judge, each metric."""
    cols = table_columns(_all_rows(result))
    header = ["cell", "pair", "rotation", "style", "map", "kind", "judge_accuracy", "judge_weak"]
    body = [
        [
            r.cell.name,
            r.cell.pair,
            r.cell.rotation,
            r.cell.style,
            name,
            _kind(r, name),
            r.judge_accuracy,
            "true" if is_weak(r.judge_accuracy) else "false",
            *(m.get(c) for c in cols),
        ]
        for r in result.results
        for name, m in r.rows.items()
    ]
    return csv_table([*header, *cols], body)


def leaderboard_json(result: SuiteResult) -> dict[str, Any]:
    """leaderboard.json (strict: a non-finite metric is null, one that does not apply absent)."""
    rows = [
        {
            "cell": r.cell.name,
            "pair": r.cell.pair,
            "rotation": r.cell.rotation,
            "style": r.cell.style,
            "map": name,
            "kind": _kind(r, name),
            "judge_accuracy": r.judge_accuracy,
            "judge_weak": is_weak(r.judge_accuracy),
            "metrics": m,
        }
        for r in result.results
        for name, m in r.rows.items()
    ]
    return json_safe(
        {
            "format": LEADERBOARD_FORMAT,
            "settings": result.settings,
            "weak_judge_below": WEAK_JUDGE,
            "columns": table_columns(_all_rows(result)),
            "rows": rows,
            "failed": result.failed,
        }
    )


def save_heatmap(result: SuiteResult, metric: str, path: Path) -> Path:
    """One metric: rows = maps (solvers, then references), columns = cells (labelled with their
    judge), each square annotated; blank where the metric does not apply or the cell failed."""
    import numpy as np
    from matplotlib.figure import Figure

    maps: list[str] = []
    for r in result.results:
        maps += [m for m in r.rows if m not in maps]
    cells = result.results
    values = np.full((len(maps), len(cells)), np.nan)
    for j, r in enumerate(cells):
        for i, name in enumerate(maps):
            v = r.rows.get(name, {}).get(metric)
            values[i, j] = np.nan if v is None else v
    fig = Figure(figsize=(2.0 + 1.1 * len(cells), 1.3 + 0.42 * len(maps)), dpi=100)
    ax = fig.add_subplot()
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    image = ax.imshow(
        np.ma.masked_invalid(values), cmap="viridis", aspect="auto", vmin=low, vmax=high
    )
    for i, j in np.ndindex(values.shape):
        v = values[i, j]
        if not math.isfinite(v):
            continue
        shade = (v - low) / (high - low) if high > low else 0.5
        ax.text(j, i, format_value(float(v)), ha="center", va="center", fontsize=7,
                color="black" if shade > 0.6 else "white")  # fmt: skip
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels(
        [f"{r.cell.name}\njudge {judge_label(r.judge_accuracy)}" for r in cells],
        rotation=35,
        ha="right",
        fontsize=7,
    )
    ax.set_yticks(range(len(maps)))
    ax.set_yticklabels(maps, fontsize=8)
    ax.set_title(f"{metric} (rows: maps, columns: cells)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    fig.tight_layout()
    return save_figure_png(fig, path)


def write_leaderboard(result: SuiteResult) -> None:
    """leaderboard.json, leaderboard.csv, heatmap_<metric>.png and leaderboard.md in out."""
    out = result.out
    atomic_write_json(out / "leaderboard.json", leaderboard_json(result))
    atomic_write_bytes(out / "leaderboard.csv", leaderboard_csv(result).encode())
    heatmaps = []
    if result.results:
        for metric in table_columns(_all_rows(result)):
            name = f"heatmap_{metric}.png"
            save_heatmap(result, metric, out / name)
            heatmaps.append(name)
    atomic_write_bytes(out / "leaderboard.md", leaderboard_markdown(result, heatmaps).encode())


def terminal_tables(result: SuiteResult, width: int) -> list[Any]:
    """The leaderboard for the terminal: each cell's maps side by side (report.metrics_tables,
    split to fit `width`), its judge in the title."""
    tables: list[Any] = []
    for r in result.results:
        title = f"{r.cell.name}: judge {judge_label(r.judge_accuracy)}"
        tables += metrics_tables(r.rows, title, width)
    return tables
