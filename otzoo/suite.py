"""`otzoo suite`: one leaderboard over solvers x pairs x data variants (rotation, style).

Each cell (pair, rotation, style) is one `otzoo compare` (otzoo.compare, called as is) into
`<out>/cells/<pair>_<rotation>_<style>/`; the suite adds what a long grid of comparisons needs:

- everything a user can get wrong is refused before anything is trained or written: the lists,
  the --set keys, every cell's compare `plan`, and an output folder holding another suite
  (`<out>/suite.json` records the settings that shape the numbers);
- it resumes, with runs of the settings it would train now only (a run of an older preset is
  refused, not mixed in): a cell whose comparison finished (its `cell.json`, written right
  after compare returns, is complete) is read back, not rerun; in a half-done cell the solver
  runs that finished are reused through compare's `--from` and the others are trained again
  (compare cannot continue a half-trained run);
- a cell that fails on its data (e.g. a style not implemented yet) is reported and the other
  cells still run; the same command later retries it;
- with `jobs` > 1 up to that many cells run at once, each in a worker process
  (otzoo.suite_jobs); the plan, the lock, the records and the leaderboard stay the same.

The leaderboard files are written by otzoo.suite_outputs.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from otzoo.compare import CompareRequest, compare, plan, route_overrides
from otzoo.config import RunConfig, config_fields, resolve
from otzoo.errors import ConfigError, OtzooError
from otzoo.judge import JudgeConfig
from otzoo.registry import get_solver, parse_solver_list
from otzoo.runs import read_config, read_metrics
from otzoo.runtime import atomic_write_json, check_out_path, torch_threads
from otzoo.suite_cells import Cell, CellResult, read_cell, write_cell
from otzoo.suite_jobs import run_in_workers
from otzoo.suite_outputs import write_leaderboard
from otzoo.train import LOCK, run_lock

Log = Callable[[str], None]

SUITE_FORMAT = "otzoo-suite-1"
SUITE_FILE = "suite.json"
AXES = ("rotation", "style")  # the data variants a suite crosses: DataConfig fields


@dataclass(frozen=True)
class SuiteRequest:
    """What `otzoo suite` was asked. `sets` are raw "key=value" items routed to the solvers
    that know each key (as compare does); rotation and style come from the suite's lists."""

    out: Path
    solvers: tuple[str, ...]
    pairs: tuple[str, ...]
    rotations: tuple[str, ...] = ("none",)
    styles: tuple[str, ...] = ("extruded",)
    preset: str = "quick"
    sets: tuple[str, ...] = ()
    seed: int = 0
    steps: int | None = None
    device: str = "auto"
    judge: JudgeConfig = JudgeConfig()
    show_progress: bool = True
    threads: int = 0  # torch CPU threads for the whole suite, each worker (0: torch's default)
    jobs: int = 1  # cells at once, each in its own process (1: one after another, in this one)

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))

    def settings(self) -> dict[str, Any]:
        """What shapes the suite's numbers, recorded in suite.json and compared on a rerun.
        Device, threads and jobs change speed, not what is measured, so a suite may be resumed
        on another machine or with another --jobs."""
        return {
            "solvers": list(self.solvers),
            "pairs": list(self.pairs),
            "rotations": list(self.rotations),
            "styles": list(self.styles),
            "preset": self.preset,
            "sets": list(self.sets),
            "seed": self.seed,
            "steps": self.steps,
            "judge": dataclasses.asdict(self.judge),
        }


@dataclass
class CellPlan:
    """What one cell needs: nothing (`done`), or a comparison (`request`) after clearing the
    folders of its unfinished solver runs (`clear`)."""

    cell: Cell
    folder: Path
    done: CellResult | None = None
    request: CompareRequest | None = None
    clear: list[Path] = field(default_factory=list)


@dataclass
class SuiteResult:
    out: Path
    settings: dict[str, Any]
    cells: list[Cell]
    results: list[CellResult]  # the finished cells, in grid order
    failed: dict[str, str] = field(default_factory=dict)  # cell name -> one-line reason


def split_list(text: str, option: str) -> tuple[str, ...]:
    """'a, b' -> ('a', 'b'); an empty list or a value given twice is refused (one line)."""
    items = tuple(s.strip() for s in text.split(",") if s.strip())
    if not items:
        raise ConfigError(f"{option} is empty; pass a comma-separated list")
    twice = sorted({s for s in items if items.count(s) > 1})
    if twice:
        raise ConfigError(f"{option} {text!r} names {', '.join(twice)} twice; list each once")
    return items


def grid_cells(req: SuiteRequest) -> list[Cell]:
    """Every (pair, rotation, style), pairs outermost; two that share a folder name are refused."""
    cells = [Cell(*c) for c in itertools.product(req.pairs, req.rotations, req.styles)]
    seen: dict[str, Cell] = {}
    for c in cells:
        if c.name in seen:
            raise ConfigError(
                f"--pairs: {seen[c.name].pair!r} and {c.pair!r} give the same cell folder "
                f"{c.name!r}; list each pair once"
            )
        seen[c.name] = c
    return cells


def _check_request(req: SuiteRequest) -> list[str]:
    """The checks that do not depend on a cell: --jobs, solver ids, --set keys, the output
    folder."""
    if req.jobs < 1:
        raise ConfigError(
            f"--jobs {req.jobs}: run at least 1 cell at a time (on a 2-core CPU: --jobs 2 "
            "--threads 1)"
        )
    ids = parse_solver_list(",".join(req.solvers))
    for item in req.sets:
        key = item.partition("=")[0].strip()
        if key in AXES:
            raise ConfigError(
                f"--set {key}: a suite crosses {key} as a list; use --{key} A,B instead"
            )
    route_overrides(list(req.sets), ids)  # unknown keys and ill-typed values, named
    check_out_path(req.out)
    stored = req.out / SUITE_FILE
    if stored.exists():
        _check_same_suite(stored, req.settings())
    elif req.out.is_dir() and any(p.name != LOCK for p in req.out.iterdir()):
        raise ConfigError(
            f"--out {req.out}: holds files but no {SUITE_FILE}; use a new or empty folder "
            "for a suite"
        )
    return ids


def _check_same_suite(path: Path, want: dict[str, Any]) -> None:
    try:
        raw = json.loads(path.read_text())
        have = raw["settings"] if raw.get("format") == SUITE_FORMAT else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        have = None
    if not isinstance(have, dict):
        raise ConfigError(f"{path}: not a suite record of this otzoo; use another --out")
    diff = [k for k in want if have.get(k) != want[k]]
    if diff:
        k = diff[0]
        raise ConfigError(
            f"--out {path.parent}: holds a suite with other settings ({k}: {have.get(k)!r}, "
            f"asked {want[k]!r}); rerun its own command to resume it, or use another --out"
        )


def _finished_run(run_dir: Path) -> bool:
    """A solver run that reached its end (train writes metrics.json last)."""
    return "train_seconds" in read_metrics(run_dir)


def _sets_for(sets: tuple[str, ...], ids: list[str]) -> tuple[str, ...]:
    """The --set items some of `ids` know: the others went into runs reused as finished."""
    known = {k for sid in ids for k in config_fields(get_solver(sid))}
    return tuple(s for s in sets if s.partition("=")[0].strip() in known)


def _cell_values(req: SuiteRequest, cell: Cell) -> dict[str, Any]:
    """The cell's data variant and the suite's options as typed values (they win over --set)."""
    values: dict[str, Any] = {"rotation": cell.rotation, "style": cell.style, "device": req.device}
    if req.steps is not None:
        values["steps"] = req.steps
    return values


def _first_difference(have: RunConfig, want: RunConfig) -> str | None:
    """`section.key: have there, want now` for the first setting that differs, else None."""
    a, b = dataclasses.asdict(have), dataclasses.asdict(want)
    for section, value in a.items():
        inner = value if isinstance(value, dict) else {"": value}
        other = b[section] if isinstance(b[section], dict) else {"": b[section]}
        for key, v in inner.items():
            if other.get(key) != v:
                name = f"{section}.{key}" if key else section
                return f"{name}: {v!r} there, {other.get(key)!r} now"
    return None


def check_runs_current(req: SuiteRequest, cell: Cell, folder: Path, ids: list[str]) -> None:
    """Refuse a cell whose finished runs were trained with other settings than this suite
    resolves now (a solver's preset changed since, say): resuming would put runs of two presets
    on one leaderboard. The device is not compared (compare reuses a run on any device)."""
    overrides = route_overrides(list(req.sets), ids)
    values = _cell_values(req, cell)
    for sid in ids:
        run_dir = folder / "runs" / sid
        if not (run_dir / "config.json").exists():
            continue
        have = read_config(run_dir)
        want = resolve(
            get_solver(sid), cell.pair, req.preset, {**overrides[sid], **values}, req.seed
        )
        diff = _first_difference(replace(have, train=replace(have.train, device=req.device)), want)
        if diff is not None:
            raise ConfigError(
                f"{run_dir}: trained with other settings than this suite gives now ({diff}; a "
                f"preset may have changed since); pass a new --out, or delete {folder} to run "
                "that cell again"
            )


def cell_request(
    req: SuiteRequest, cell: Cell, folder: Path, train: list[str], reuse: list[Path]
) -> CompareRequest:
    """The comparison of one cell: its data variant as typed values (they win over --set)."""
    values = _cell_values(req, cell)
    return CompareRequest(
        out=folder,
        solvers=tuple(train),
        pair=cell.pair,
        preset=req.preset,
        values=values,
        sets=_sets_for(req.sets, train),
        seed=req.seed,
        from_runs=tuple(reuse),
        judge=req.judge,
        show_progress=req.show_progress,
    )


def plan_cell(req: SuiteRequest, cell: Cell, ids: list[str]) -> CellPlan:
    """Read back a finished cell, or plan its comparison (refusing bad input) without writing."""
    folder = req.out / "cells" / cell.name
    check_runs_current(req, cell, folder, ids)
    done = read_cell(folder, cell, ids)
    if done is not None:
        return CellPlan(cell, folder, done=done)
    runs = {sid: folder / "runs" / sid for sid in ids}
    reuse = [sid for sid in ids if _finished_run(runs[sid])]
    train = [sid for sid in ids if sid not in reuse]
    clear = [p for sid in train for p in (runs[sid], folder / "tb" / sid) if p.exists()]
    creq = cell_request(req, cell, folder, train, [runs[sid] for sid in reuse])
    # compare's own plan refuses unknown pairs, data values, keys and runs of other data. The
    # unfinished runs it would find in this folder are cleared before the cell runs, so they
    # are planned as absent: trained runs are planned under a path that holds nothing.
    plan(replace(creq, out=folder / ".planned") if clear else creq)
    return CellPlan(cell, folder, request=creq, clear=clear)


def plan_suite(req: SuiteRequest) -> list[CellPlan]:
    """Every check of every cell, before anything is trained or written."""
    ids = _check_request(req)
    return [plan_cell(req, cell, ids) for cell in grid_cells(req)]


def run_cell(cp: CellPlan, ids: list[str], log: Log) -> CellResult:
    """Clear the cell's unfinished runs, compare, record the rows in the suite's order."""
    assert cp.request is not None
    for path in cp.clear:
        shutil.rmtree(path)
    res = compare(cp.request, log=log)
    refs = [k for k in res.rows if k not in res.solver_names]
    rows = {name: res.rows[name] for name in [*ids, *refs]}
    judge = res.judge
    result = CellResult(
        cp.cell,
        rows,
        list(ids),
        None if judge is None else float(judge.accuracy),
        None if judge is None else judge.key,
        dict(res.notes),
        list(res.warnings),
    )
    write_cell(cp.folder, result)
    return result


def run_suite(req: SuiteRequest, log: Log = print) -> SuiteResult:
    """Plan every cell, then run the ones not finished, then write the leaderboard."""
    with torch_threads(req.threads):
        plan_suite(req)  # refuse bad input before the lock creates the folder
        req.out.mkdir(parents=True, exist_ok=True)
        with run_lock(req.out):  # one process per suite: a second would clear the first's runs
            return _run_locked(req, plan_suite(req), log)


def _run_locked(req: SuiteRequest, plans: list[CellPlan], log: Log) -> SuiteResult:
    """Record the settings, run the cells not finished (a failing one does not stop the rest),
    write the leaderboard of every finished cell (in grid order, however many ran at once)."""
    ids = list(req.solvers)
    atomic_write_json(req.out / SUITE_FILE, {"format": SUITE_FORMAT, "settings": req.settings()})
    todo = [cp for cp in plans if cp.done is None]
    log(f"suite: {len(plans)} cell(s), {len(plans) - len(todo)} finished earlier")
    if req.jobs > 1 and todo:
        results, failed = _run_in_workers(req, plans, todo, ids, log)
    else:
        results, failed = _run_here(plans, todo, ids, log)
    result = SuiteResult(req.out, req.settings(), [cp.cell for cp in plans], results, failed)
    write_leaderboard(result)
    return result


def _run_here(
    plans: list[CellPlan], todo: list[CellPlan], ids: list[str], log: Log
) -> tuple[list[CellResult], dict[str, str]]:
    """One cell after another in this process, with compare's log and progress bars."""
    results: list[CellResult] = []
    failed: dict[str, str] = {}
    ran = 0
    for cp in plans:
        if cp.done is not None:
            log(f"cell {cp.cell.name}: finished earlier, read back")
            results.append(cp.done)
            continue
        ran += 1
        log(f"cell {ran} of {len(todo)} to run: {cp.cell.name}")
        try:
            results.append(run_cell(cp, ids, log))
        except OtzooError as err:  # its data or device: the other cells still run
            failed[cp.cell.name] = str(err)
            log(f"cell {cp.cell.name} failed: {err}")
    return results, failed


def _run_in_workers(
    req: SuiteRequest, plans: list[CellPlan], todo: list[CellPlan], ids: list[str], log: Log
) -> tuple[list[CellResult], dict[str, str]]:
    """`req.jobs` cells at once in worker processes; results and failures in grid order, not
    in the order the cells finished, so the leaderboard does not depend on --jobs."""
    for cp in plans:
        if cp.done is not None:
            log(f"cell {cp.cell.name}: finished earlier, read back")
    n = min(req.jobs, len(todo))
    cores = os.cpu_count() or 1
    log(f"suite: {n} cell(s) at once, each in its own process (progress: one line per cell)")
    if n > 1 and (req.threads == 0 or n * req.threads > cores):
        log(
            f"suite: note: {n} jobs x {req.threads or 'all'} thread(s) on {cores} core(s) "
            f"compete; --threads {max(1, cores // n)} is faster (README, Leaderboard)"
        )
    outcomes = run_in_workers(run_cell, todo, ids, req.jobs, req.threads, log)
    results: list[CellResult] = []
    failed: dict[str, str] = {}
    for cp in plans:
        done = cp.done or outcomes[cp.cell.name].result
        if done is not None:
            results.append(done)
        else:
            failed[cp.cell.name] = str(outcomes[cp.cell.name].error)
    return results, failed
