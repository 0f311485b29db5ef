"""What a voxel map's haze is made of: for each run folder, its map's outputs on the first test
inputs, split by the real target each input is paired with (exact OT between the inputs and as
many real targets, otzoo.metrics.stroke_split): kept strokes, the input's own strokes the map
should switch off (source-only), the target's strokes it should draw (target-only), and the
background. Per group: voxels per sample, the outputs' mean brightness there and the share they
light. The identity row comes first (source-only lit 1, target-only 0; a perfect map: 0 / 1).
With --by-frequency a second table cuts each group by how often the run's real training targets
light the voxel (otzoo.metrics.frequency_split) and gives the shares the output lights dim
(haze: real digits have no dim voxel) and bright: a map hedging between targets puts its dim
voxels where targets are often lit.

    .venv/bin/python benchmarks/haze_split.py RUN_DIR [RUN_DIR ...] [--samples 200] [--by-frequency]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from otzoo.errors import DataError, OtzooError
from otzoo.metrics import (
    FREQUENCY_BINS,
    STROKE_GROUPS,
    batched_apply,
    frequency_split,
    stroke_split,
    target_frequency,
)
from otzoo.runs import load_run
from otzoo.runtime import torch_threads

COLUMNS = [f"{g} {k}" for g in STROKE_GROUPS for k in ("voxels", "brightness", "lit")]


def row(name: str, scores: dict[str, float]) -> str:
    values = [scores[c.replace(" ", "_")] for c in COLUMNS]
    return (
        f"| {name} | "
        + " | ".join(
            f"{v:.1f}" if c.endswith("voxels") else f"{v:.3f}"
            for c, v in zip(COLUMNS, values, strict=True)
        )
        + " |"
    )


def frequency_rows(name: str, scores: dict[str, float]) -> list[str]:
    """One row per stroke group: dim / bright shares (voxels per sample) in each bin."""
    return [
        f"| {name} | {group} | "
        + " | ".join(
            f"{scores[f'{group}_{b}_dim']:.2f} / {scores[f'{group}_{b}_bright']:.2f}"
            f" ({scores[f'{group}_{b}_voxels']:.0f})"
            for b in FREQUENCY_BINS
        )
        + " |"
        for group in STROKE_GROUPS
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "runs", nargs="+", type=Path, help="run folders (otzoo train, or a compare's runs/<solver>)"
    )
    p.add_argument(
        "--samples", type=int, default=200, help="test inputs (and real targets) per run"
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: one per core)")
    p.add_argument(
        "--by-frequency",
        action="store_true",
        help="also cut each group by how often real training targets light the voxel",
    )
    a = p.parse_args()
    if a.samples < 1:
        p.error(f"--samples {a.samples}: pass at least 1")
    try:
        with torch_threads(a.threads):
            print_split(a)
    except OtzooError as err:  # a bad --threads or run folder: one line, exit 2, as the CLI does
        p.error(str(err))


def print_split(a: argparse.Namespace) -> None:
    """The stroke split of each run folder in `a.runs`, every folder checked before a line."""
    loaded = []
    for run_dir in a.runs:
        run, solver, data = load_run(run_dir)
        if data.kind != "voxel":
            raise DataError(
                f"{run_dir}: a vector run; the split reads voxel strokes, pass a voxel run"
            )
        loaded.append((run_dir, run, solver, data))
    print("| map | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    ghosts: list[str] = []
    identity_done: set[tuple[str, int]] = set()
    for run_dir, run, solver, data in loaded:
        n = min(a.samples, len(data.x_test), len(data.y_test))
        x, y = data.x_test[:n], data.y_test[:n]
        often = target_frequency(data.y_train) if a.by_frequency else None
        key = (repr(run.data), run.seed)
        if key not in identity_done:  # one identity row per data set
            identity_done.add(key)
            name = f"identity ({run.pair}, seed {run.seed})"
            print(row(name, stroke_split(x, x, y)))
            if often is not None:
                ghosts += frequency_rows(name, frequency_split(x, x, y, often))
        tx = batched_apply(solver.transport, x, device=solver.device)
        name = f"{run.solver} ({run_dir.name})"
        print(row(name, stroke_split(x, tx, y)))
        if often is not None:
            ghosts += frequency_rows(name, frequency_split(x, tx, y, often))
    if ghosts:
        bins = [f"{b} ({lo:g}-{hi:g})" for b, (lo, hi) in FREQUENCY_BINS.items()]
        print(
            "\nShare lit dim / bright (voxels per sample) by how often real training targets light it:"
        )
        print("| map | group | " + " | ".join(bins) + " |")
        print("|---" * (len(bins) + 2) + "|")
        print("\n".join(ghosts))


if __name__ == "__main__":
    main()
