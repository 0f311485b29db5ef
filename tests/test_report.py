"""Terminal tables fit 80 columns without cutting a number; files keep full names."""

from __future__ import annotations

import math

from rich.console import Console

from otzoo.report import METRIC_NAMES, format_value, markdown_table, metrics_tables


def _rows(n_solvers: int) -> dict[str, dict[str, float]]:
    names = ["not", "not-weak", "otm", "pot-sinkhorn", "amortized", "w2gn"][:n_solvers]
    rows = {
        name: {m: 1234.5678 * (i + 1) / 7 for m in METRIC_NAMES} for i, name in enumerate(names)
    }
    rows["identity"] = {m: 0.000123456 for m in METRIC_NAMES}
    rows["real target"] = {m: math.nan for m in METRIC_NAMES}
    rows["real target"]["fid"] = 3.3e-16
    return rows


def test_tables_fit_80_columns_and_keep_every_number_whole():
    for n in (1, 2, 6):
        rows = _rows(n)
        console = Console(width=80, record=True)
        for table in metrics_tables(rows, "otzoo compare: pair 3-5", 80):
            console.print(table)
        text = console.export_text()
        assert all(len(line) <= 80 for line in text.splitlines()), text
        assert "…" not in text
        for name, r in rows.items():
            assert name in text
            for v in r.values():
                assert format_value(v) in text
        for metric in METRIC_NAMES:  # full metric names, one row each
            assert metric in text


def test_markdown_keeps_one_row_per_map_with_full_names():
    text = markdown_table(_rows(2))
    assert text.splitlines()[0].startswith("| map | transport_cost | color_preservation |")
    assert len(text.splitlines()) == 2 + 4
