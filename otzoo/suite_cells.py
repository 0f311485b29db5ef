"""A suite's cells and their records: `Cell` (one pair x rotation x style), `CellResult` (its
rows and judge) and cell.json, written atomically right after the cell's comparison finishes,
so its presence means the cell is done and a rerun reads it back instead of training again."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from otzoo.report import json_safe
from otzoo.runtime import atomic_write_json

CELL_FORMAT = "otzoo-suite-cell-1"
CELL_FILE = "cell.json"  # a cell's finished comparison, every row (references too) and its judge
_NAN = float("nan")


@dataclass(frozen=True)
class Cell:
    """One (pair, rotation, style) of the grid; `name` is its folder under <out>/cells."""

    pair: str
    rotation: str
    style: str

    @property
    def name(self) -> str:
        raw = f"{self.pair}_{self.rotation}_{self.style}"
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-.") or "cell"


@dataclass
class CellResult:
    """A cell's rows (solvers in the suite's order, then the reference rows) and its judge."""

    cell: Cell
    rows: dict[str, dict[str, float]]
    solver_names: list[str]
    judge_accuracy: float | None  # None: no judge applies (e.g. vector pairs)
    judge_key: str | None = None
    notes: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    read_back: bool = False  # finished by an earlier invocation


def read_cell(folder: Path, cell: Cell, solvers: list[str]) -> CellResult | None:
    """A finished cell's record, or None when it is absent, unreadable, of another cell or
    lacks a solver row (the cell is then run again)."""
    try:
        raw = json.loads((folder / CELL_FILE).read_text())
        same = raw["format"] == CELL_FORMAT and raw["cell"] == dataclasses.asdict(cell)
        rows = {  # in the recorded order (the JSON object's keys are sorted)
            str(name): {k: _NAN if v is None else float(v) for k, v in raw["rows"][name].items()}
            for name in raw["maps"]
        }
        acc = raw["judge"]["accuracy"] if raw.get("judge") else None
        result = CellResult(
            cell,
            rows,
            [str(s) for s in raw["solvers"]],
            None if acc is None else float(acc),
            raw["judge"]["key"] if raw.get("judge") else None,
            {str(k): str(v) for k, v in raw.get("notes", {}).items()},
            [str(w) for w in raw.get("warnings", [])],
            read_back=True,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not same or result.solver_names != solvers or not set(solvers) <= set(rows):
        return None
    return result


def write_cell(folder: Path, result: CellResult) -> None:
    """cell.json, atomically: its presence means the cell's comparison finished."""
    judge = (
        None
        if result.judge_accuracy is None
        else {"accuracy": result.judge_accuracy, "key": result.judge_key}
    )
    record = {
        "format": CELL_FORMAT,
        "cell": dataclasses.asdict(result.cell),
        "solvers": result.solver_names,
        "maps": list(result.rows),
        "rows": json_safe(result.rows),
        "judge": judge,
        "notes": result.notes,
        "warnings": result.warnings,
    }
    atomic_write_json(folder / CELL_FILE, record)
