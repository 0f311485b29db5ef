"""What a comparison leaves behind: report.md, metrics.json / .csv, samples.png, loss.png and
the TensorBoard summaries of each solver (otzoo.compare decides what is trained and scored)."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from otzoo.config import RunConfig
from otzoo.data import PairData
from otzoo.evaluate import apply_map
from otzoo.judge import weakest_digits
from otzoo.report import json_safe, markdown_table, metrics_csv
from otzoo.runs import read_loss_curves
from otzoo.runtime import atomic_write_bytes, atomic_write_json, machine_summary, seeded_rng
from otzoo.viz import TITLE_SEPARATOR, save_grid_png, save_loss_png, views_for

if TYPE_CHECKING:
    from otzoo.compare import CompareRequest, CompareResult, Entry


def _hparams(run: RunConfig) -> dict[str, Any]:
    """The few settings worth a column in TensorBoard's HPARAMS tab (solver and preset first:
    it shows a limited number, differing ones and then by name); the full config goes in a
    text summary beside it."""
    flat: dict[str, Any] = {"solver": run.solver, "preset": run.preset, "pair": run.pair}
    flat.update(seed=run.seed, steps=run.train.steps, batch_size=run.train.batch_size)
    for k, v in dataclasses.asdict(run.solver_config).items():
        if k.startswith("lr") or k.endswith("_lr"):
            flat[k] = v
    return flat


def log_tensorboard(tb_dir: Path, run: RunConfig, metrics: dict[str, float]) -> None:
    """Hparams and the final metrics (scalars under metrics/, the same tags training logged
    at each evaluation), so `tensorboard --logdir DIR/tb` lines the solvers up."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    finite = {f"metrics/{k}": float(v) for k, v in metrics.items() if math.isfinite(v)}
    step = run.train.steps
    with SummaryWriter(str(tb_dir)) as writer:
        for summary in hparams(_hparams(run), finite):
            writer.file_writer.add_summary(summary, step)
        writer.add_text("config", "```\n" + json.dumps(run.to_dict(), indent=2) + "\n```", step)
        for k, v in finite.items():
            writer.add_scalar(k, v, step)


def sample_rows(
    entries: list[Entry], data: PairData, n: int, seed: int, rows_of: dict[str, dict[str, float]]
) -> tuple[list[torch.Tensor], list[str]]:
    """The same n random test inputs, each solver's outputs for them (seeded noise), then n
    real target samples; each row labelled with its target accuracy and color preservation."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.x_test), generator=gen)[:n]
    x = data.x_test[idx]
    spec = data.spec
    rows, labels = [x], [f"input ({getattr(spec, 'source', None) or 'source'})"]
    for e in entries:
        if e.solver is None:
            continue
        with seeded_rng(seed, e.solver.device):
            rows.append(apply_map(e.solver, x).cpu().clamp(-1, 1))
        labels.append(f"{e.name}\n{_row_metrics(rows_of.get(e.name, {}))}")
    if tuple(data.y_test.shape[1:]) == tuple(rows[-1].shape[1:]):
        pick = torch.randperm(len(data.y_test), generator=gen)[:n]
        rows.append(data.y_test[pick])
        labels.append(f"real target\n{_row_metrics(rows_of.get('real target', {}))}")
    return rows, labels


def _row_metrics(m: dict[str, float]) -> str:
    shown = [(k, m[k]) for k in ("target_accuracy", "color_preservation") if k in m]
    short = {"target_accuracy": "acc", "color_preservation": "color"}
    return "  ".join(f"{short[k]} {v:.2f}" for k, v in shown if math.isfinite(v))


def picture_title(pair: str, runs: Sequence[RunConfig]) -> str:
    """The data and training settings the rows share; steps as a range where the solvers'
    presets differ (e.g. not's 1,150 and otm's 2,100 on unrotated digit pairs)."""
    run, d = runs[0], runs[0].data
    lo, hi = min(r.train.steps for r in runs), max(r.train.steps for r in runs)
    steps = f"{lo}" if lo == hi else f"{lo}-{hi}"
    return TITLE_SEPARATOR.join(
        (
            f"{pair}: {d.data} {d.grid}^3, {d.coloring}, rotation {d.rotation}, {d.style}",
            f"{run.preset}, {steps} steps",
            f"seed {run.seed}",
        )
    )


def write_outputs(
    result: CompareResult, entries: list[Entry], data: PairData, req: CompareRequest
) -> None:
    """metrics.json, metrics.csv, samples.png (voxel data), loss.png and report.md in req.out."""
    out = req.out
    solver_rows = {k: result.rows[k] for k in result.solver_names}
    atomic_write_json(out / "metrics.json", json_safe(solver_rows))
    csv_text = metrics_csv(result.rows, set(solver_rows))
    atomic_write_bytes(out / "metrics.csv", csv_text.encode())
    pictures = []
    if data.kind == "voxel":
        rows, labels = sample_rows(entries, data, req.n_pictures, result.seed, result.rows)
        title = picture_title(result.pair, [e.run for e in entries])
        views = views_for(entries[0].run.data.rotation, entries[0].run.data.style)
        save_grid_png(rows, out / "samples.png", labels, title=title, views=views)
        pictures.append("![inputs, each solver's maps of them, real targets](samples.png)\n")
    curves = {e.name: read_loss_curves(_tb_dir(e, req), e.run.solver) for e in entries}
    if any(curves.values()):
        save_loss_png(curves, out / "loss.png", f"training losses, pair {result.pair}")
        pictures.append("![training losses per solver](loss.png)\n")
    atomic_write_bytes(out / "report.md", render_report(result, entries, pictures).encode())


def _tb_dir(e: Entry, req: CompareRequest) -> Path:
    """Where a solver's training curves are: this comparison's tb/<name>, or a reused run's tb/."""
    return e.run_dir / "tb" if e.reused else req.out / "tb" / e.name


def render_report(result: CompareResult, entries: list[Entry], pictures: list[str]) -> str:
    """report.md: warnings first, the table, what the references mean, settings, pictures."""
    data_cfg = entries[0].run.data
    parts = [
        f"# otzoo compare: pair {result.pair}\n",
        f"Written {time.strftime('%Y-%m-%d %H:%M:%S')}.\n",
    ]
    parts += [f"> **Warning**: {w}\n" for w in result.warnings]
    parts += [
        "## Metrics\n",
        markdown_table(result.rows),
        "`-`: metric does not apply to this map or data; `nan`: the map's outputs were not finite.\n",
        "`identity` and `real target` are references: the identity map, and the real target test "
        "samples taken as outputs (so their `fid` and `w2_to_target` are 0 by construction). "
        "`fid_floor` is the Frechet distance between two random halves of the real target test "
        "set: the sampling noise of `fid`, measured at half the sample size (so a little "
        "pessimistic); a `fid` near it is as good as this test set can tell.\n",
    ]
    for name, note in result.notes.items():
        parts.append(f"- **{name}**: {note}\n")
    devices = (str(e.solver.device) for e in entries if e.solver is not None)
    parts += [
        "## Settings\n",
        f"- seed: {result.seed}; torch CPU threads: {torch.get_num_threads()}",
        f"- machine: {machine_summary(next(devices, 'cpu'))}",
    ]
    parts.append(f"- data: {json.dumps(dataclasses.asdict(data_cfg))}")
    for e in entries:
        how = f"reused from `{e.run_dir}`" if e.reused else f"trained into `{e.run_dir}`"
        if e.run.init_from:  # a warm start: it did not begin from random weights
            how += f", warm-started from the final networks of `{e.run.init_from}`"
        parts.append(
            f"- {e.name}: {how}, preset {e.run.preset}, {e.run.train.steps} steps, "
            f"config `{json.dumps(dataclasses.asdict(e.run.solver_config))}`"
        )
    j = result.judge
    if j is not None:
        parts.append(
            f"- judge: key `{j.key}`, test accuracy {j.accuracy:.4f} on {j.info['n_test']} test "
            f"digits (trained on {j.info['n_train']} train digits, "
            f"{j.info.get('steps', '?')} Adam steps, {j.info.get('train_seconds', '?')} s; "
            f"weakest digits, with what it takes them for: {weakest_digits(j.info)})"
        )
    else:
        parts.append("- judge: none (no target digit or not voxel data)")
    parts += ["", "## Pictures\n", *(pictures or ["(none: not voxel data and no losses)\n"])]
    return "\n".join(parts) + "\n"
