"""Formatting of results, one module for every table otzoo prints or writes: terminal (rich),
Markdown (report.md), CSV and strict JSON. Numbers come in as {row: {metric: value}} dicts;
nothing here computes a metric."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

# Table order of the metrics (otzoo.evaluate computes them); `train_seconds` comes last.
METRIC_NAMES = (
    "transport_cost",
    "color_preservation",
    "color_purity",
    "target_accuracy",
    "worst_color_accuracy",
    "fid",
    "fid_floor",
    "w2_to_target",
    "lit_share",
    "diversity",
    "mse_to_clean",
    "l2_uvp",
    "cosine",
)


def format_value(value: float | None) -> str:
    """Four significant digits; NaN shows as 'nan', a missing metric as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.4g}"


def table_columns(rows: dict[str, dict[str, float]]) -> list[str]:
    """Metric columns any row has, in the standard order (train_seconds last)."""
    present = {k for r in rows.values() for k in r}
    return [k for k in (*METRIC_NAMES, "train_seconds") if k in present]


def metrics_table(rows: dict[str, dict[str, float]], title: str) -> Any:
    """A rich table: one row per map, one column per metric that any row has."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("map")
    cols = table_columns(rows)
    for c in cols:
        table.add_column(c, justify="right")
    for name, r in rows.items():
        table.add_row(name, *(format_value(r.get(c)) for c in cols))
    return table


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of ready-made cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def markdown_table(rows: dict[str, dict[str, float]]) -> str:
    """The same table as `metrics_table`, in Markdown (for report.md)."""
    cols = table_columns(rows)
    cells = [[name, *(format_value(r.get(c)) for c in cols)] for name, r in rows.items()]
    return markdown(["map", *cols], cells)


def metrics_csv(rows: dict[str, dict[str, float]], solvers: set[str]) -> str:
    """CSV with full precision: map, kind (solver | reference), one column per metric;
    an empty cell is a metric that does not apply, `nan` one that was not finite."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    cols = table_columns(rows)
    writer.writerow(["map", "kind", *cols])
    for name, r in rows.items():
        kind = "solver" if name in solvers else "reference"
        writer.writerow([name, kind, *("" if r.get(c) is None else repr(r[c]) for c in cols)])
    return buf.getvalue()


def json_safe(rows: Any) -> Any:
    """NaN/Inf -> None, so the JSON is strict (a null metric was computed and was not finite)."""
    if isinstance(rows, dict):
        return {k: json_safe(v) for k, v in rows.items()}
    if isinstance(rows, float) and not math.isfinite(rows):
        return None
    return rows
