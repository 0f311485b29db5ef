"""What a voxel map's haze is made of: for each run folder, its map's outputs on the first test
inputs, split by the real target each input is paired with (exact OT between the inputs and as
many real targets, otzoo.metrics.stroke_split): kept strokes, the input's own strokes the map
should switch off (source-only), the target's strokes it should draw (target-only), and the
background. Per group: voxels per sample, the outputs' mean brightness there and the share they
light. The identity row comes first (source-only lit 1, target-only 0; a perfect map: 0 / 1).

    .venv/bin/python benchmarks/haze_split.py RUN_DIR [RUN_DIR ...] [--samples 200]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from otzoo.errors import OtzooError
from otzoo.metrics import STROKE_GROUPS, batched_apply, stroke_split
from otzoo.runs import load_run

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "runs", nargs="+", type=Path, help="run folders (otzoo train, or a compare's runs/<solver>)"
    )
    p.add_argument(
        "--samples", type=int, default=200, help="test inputs (and real targets) per run"
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    a = p.parse_args()
    if a.samples < 1:
        p.error(f"--samples {a.samples}: pass at least 1")
    torch.set_num_threads(a.threads)
    loaded = []
    for run_dir in a.runs:  # every folder checked before a line is printed
        try:
            run, solver, data = load_run(run_dir)
        except OtzooError as err:  # one line and exit status 2, as the CLI does
            p.error(str(err))
        if data.kind != "voxel":
            p.error(f"{run_dir}: a vector run; the split reads voxel strokes, pass a voxel run")
        loaded.append((run_dir, run, solver, data))
    print("| map | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    identity_done: set[tuple[str, int]] = set()
    for run_dir, run, solver, data in loaded:
        n = min(a.samples, len(data.x_test), len(data.y_test))
        x, y = data.x_test[:n], data.y_test[:n]
        key = (repr(run.data), run.seed)
        if key not in identity_done:  # one identity row per data set
            identity_done.add(key)
            print(row(f"identity ({run.pair}, seed {run.seed})", stroke_split(x, x, y)))
        tx = batched_apply(solver.transport, x, device=solver.device)
        print(row(f"{run.solver} ({run_dir.name})", stroke_split(x, tx, y)))


if __name__ == "__main__":
    main()
