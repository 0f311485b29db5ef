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
    "nfe",
    "straightness",
)


def format_value(value: float | None) -> str:
    """Four significant digits; NaN shows as 'nan', a missing metric as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.4g}"


def table_columns(rows: dict[str, dict[str, float]]) -> list[str]:
    """Metric columns any row has, in the standard order (train_seconds, then the step of a
    map chosen on training data, last)."""
    present = {k for r in rows.values() for k in r}
    return [k for k in (*METRIC_NAMES, "train_seconds", "selected_step") if k in present]


def metrics_tables(rows: dict[str, dict[str, float]], title: str, width: int = 80) -> list[Any]:
    """Terminal tables that fit `width` columns without cutting a number: one row per metric
    (full names), one column per map; maps that do not fit go to a next table below."""
    from rich.console import Console
    from rich.table import Table

    cols = table_columns(rows)
    maps = list(rows)
    measure = Console(width=10_000)

    def build(chunk: list[str], heading: str | None) -> Table:
        table = Table(title=heading, title_justify="left")
        table.add_column("metric", no_wrap=True)
        for name in chunk:
            table.add_column(name, justify="right", no_wrap=True)
        for c in cols:
            table.add_row(c, *(format_value(rows[name].get(c)) for name in chunk))
        return table

    tables, start = [], 0
    while start < len(maps):
        size = len(maps) - start
        while size > 1:  # the widest chunk that fits
            wide = measure.measure(build(maps[start : start + size], None)).maximum
            if wide <= width:
                break
            size -= 1
        tables.append(build(maps[start : start + size], title if not tables else None))
        start += size
    return tables


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of ready-made cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def markdown_table(rows: dict[str, dict[str, float]]) -> str:
    """One row per map, one column per metric, in Markdown (report.md: no width limit)."""
    cols = table_columns(rows)
    cells = [[name, *(format_value(r.get(c)) for c in cols)] for name, r in rows.items()]
    return markdown(["map", *cols], cells)


def csv_value(value: Any) -> str:
    """A CSV cell with full precision: '' for a metric that does not apply, `nan` for one that
    was not finite, repr for any other number (round-trips exactly)."""
    return "" if value is None else value if isinstance(value, str) else repr(value)


def csv_table(header: list[str], rows: list[list[Any]]) -> str:
    """CSV text of a header and rows of values (each through csv_value)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([csv_value(v) for v in r] for r in rows)
    return buf.getvalue()


def metrics_csv(rows: dict[str, dict[str, float]], solvers: set[str]) -> str:
    """CSV with full precision: map, kind (solver | reference), one column per metric;
    an empty cell is a metric that does not apply, `nan` one that was not finite."""
    cols = table_columns(rows)
    body = [
        [name, "solver" if name in solvers else "reference", *(r.get(c) for c in cols)]
        for name, r in rows.items()
    ]
    return csv_table(["map", "kind", *cols], body)


def json_safe(rows: Any) -> Any:
    """NaN/Inf -> None, so the JSON is strict (a null metric was computed and was not finite)."""
    if isinstance(rows, dict):
        return {k: json_safe(v) for k, v in rows.items()}
    if isinstance(rows, float) and not math.isfinite(rows):
        return None
    return rows
