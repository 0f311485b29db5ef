"""The comparison harness: every solver trained on the same data with the same seed, judged by
the same metrics, reported side by side (report.md, metrics.json/.csv, samples.png, tb/).

Everything a user can get wrong (unknown solver, unknown --set key, runs of different data,
an output folder that already holds runs, a warm-start run that does not fit) is refused in
`plan` and `_check_inits` before anything is trained or written. Training and evaluation run
with torch's deterministic algorithms, so the same seed on the same machine gives the same
metrics.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from otzoo.compare_outputs import log_tensorboard, write_outputs
from otzoo.config import RunConfig, config_fields, parse_overrides, resolve
from otzoo.data import PairData, load_pair, parse_pair
from otzoo.errors import ConfigError, DivergenceError
from otzoo.evaluate import NAN, evaluate_solver, quality_warnings, reference_rows, wants_judge
from otzoo.judge import Judge, JudgeConfig, get_judge
from otzoo.registry import build_solver, get_solver, parse_solver_list
from otzoo.runs import load_run, read_config, recorded_selection, recorded_train_seconds
from otzoo.runtime import (
    check_out_path,
    deterministic_kernels,
    resolve_device,
    torch_threads,
)
from otzoo.solver import Solver
from otzoo.train import train
from otzoo.warm_start import init_run_config, load_init

Log = Callable[[str], None]


@dataclass(frozen=True)
class CompareRequest:
    """What `otzoo compare` was asked: `values` are typed settings for every solver (data
    options, steps, device: they win over --set), `sets` raw "key=value" items routed to the
    solvers whose configs know each key."""

    out: Path
    solvers: tuple[str, ...] = ()
    pair: str | None = None
    preset: str = "quick"
    values: Mapping[str, Any] = field(default_factory=dict)
    sets: tuple[str, ...] = ()
    seed: int | None = None
    from_runs: tuple[Path, ...] = ()
    init_from: tuple[Path, ...] = ()  # warm starts: each the run of one solver trained here
    judge: JudgeConfig = JudgeConfig()
    show_progress: bool = True
    n_pictures: int = 5
    threads: int | None = None  # torch CPU threads (None: torch's default)

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "from_runs", tuple(Path(p) for p in self.from_runs))
        object.__setattr__(self, "init_from", tuple(Path(p) for p in self.init_from))


@dataclass
class Entry:
    """One row of the comparison: a solver to train here, or a finished run to reuse."""

    name: str
    run: RunConfig
    run_dir: Path
    reused: bool
    solver: Solver | None = None
    train_seconds: float = NAN
    note: str = ""


@dataclass
class CompareResult:
    """What a comparison produced (also written to its output folder)."""

    out: Path
    rows: dict[str, dict[str, float]]  # solver rows, then the reference rows
    solver_names: list[str]
    judge: Judge | None
    pair: str
    seed: int
    notes: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # a weak judge, a fid below its floor


def route_overrides(items: list[str], ids: list[str]) -> dict[str, dict[str, Any]]:
    """Send each --set item to the solvers whose configs know its key; typed per solver.

    A key only some listed solvers have is fine; a key none has is an error naming them.
    """
    routed: dict[str, list[str]] = {sid: [] for sid in ids}
    for item in items:
        key = item.partition("=")[0].strip()
        owners = [sid for sid in ids if key in config_fields(get_solver(sid))]
        if not owners and key:
            raise ConfigError(
                f"--set {key}: no listed solver ({', '.join(ids)}) has this key; "
                "see `otzoo solvers --keys ID` for the keys of each"
            )
        for sid in owners or ids:  # an empty key is rejected by parse_overrides below
            routed[sid].append(item)
    return {sid: parse_overrides(routed[sid], get_solver(sid)) for sid in ids}


def _check_same(entry: Entry, pair: str, data: Any, seed: int) -> None:
    r = entry.run
    have_pair, want_pair = parse_pair(r.pair), parse_pair(pair)
    checks = (
        ("pair", (have_pair.kind, have_pair.raw) == (want_pair.kind, want_pair.raw), r.pair, pair),
        ("data settings", r.data == data, _short(r.data), _short(data)),
        ("seed", r.seed == seed, r.seed, seed),
    )
    for what, same, have, want in checks:
        if not same:
            raise ConfigError(
                f"{entry.name}: {what} ({have}) differs from this comparison's ({want}); "
                "compare runs of one pair, data and seed (match them with --pair/--set/--seed)"
            )


def init_runs(dirs: tuple[Path, ...], ids: list[str]) -> dict[str, str]:
    """The --init-from folders by the solver each was trained with (absolute paths, as the runs'
    config.json records them): at most one per solver, and only of solvers trained here."""
    found: dict[str, Path] = {}
    for d in dirs:
        sid = init_run_config(d).solver
        if sid not in ids:
            raise ConfigError(
                f"--init-from {d}: a run of solver {sid!r}, which is not among --solvers "
                f"({', '.join(ids) or 'none'}); add {sid} to --solvers or drop this --init-from"
            )
        if sid in found:
            raise ConfigError(
                f"--init-from {found[sid]} and {d}: both are runs of {sid!r}; pass one per solver"
            )
        found[sid] = d
    return {sid: str(d.absolute()) for sid, d in found.items()}


def _short(cfg: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(cfg).items())


def plan(req: CompareRequest) -> tuple[list[Entry], str, int]:
    """Resolve every run and check it all before anything is trained or written."""
    ids = parse_solver_list(",".join(req.solvers)) if req.solvers else []
    if not ids and not req.from_runs:
        raise ConfigError("compare needs --solvers ID,ID (e.g. not,not-weak) or --from RUN_DIR")
    reused = [(Path(d), read_config(Path(d))) for d in req.from_runs]
    pair = req.pair or (reused[0][1].pair if reused else None)
    if pair is None:
        raise ConfigError("compare needs --pair SPEC (e.g. --pair 3-5) to train solvers")
    parse_pair(pair)
    seed = req.seed if req.seed is not None else (reused[0][1].seed if reused else 0)
    if req.sets and not ids:
        raise ConfigError("--set applies to solvers trained here; add --solvers or drop --set")
    overrides = route_overrides(list(req.sets), ids) if ids else {}
    inits = init_runs(req.init_from, ids)
    entries = [
        Entry(
            sid,
            replace(
                resolve(get_solver(sid), pair, req.preset, {**overrides[sid], **req.values}, seed),
                init_from=inits.get(sid),
            ),
            req.out / "runs" / sid,
            False,
        )
        for sid in ids
    ]
    for run_dir, run in reused:
        taken = {e.name for e in entries}
        where = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(run_dir)).strip("_.")
        name = run.solver if run.solver not in taken else f"{run.solver}@{where}"
        if name in taken:
            raise ConfigError(f"--from {run_dir}: given twice; list each run once")
        device = str(req.values.get("device", "auto"))
        entries.append(
            Entry(name, replace(run, train=replace(run.train, device=device)), run_dir, True)
        )
    data_cfg = entries[0].run.data
    for e in entries:
        _check_same(e, pair, data_cfg, seed)
        resolve_device(e.run.train.device)
        if not e.reused and (e.run_dir / "config.json").exists():
            raise ConfigError(
                f"{e.run_dir}: already holds a run; choose another --out, "
                f"or reuse it with --from {e.run_dir}"
            )
    return entries, pair, seed


def _load_reused(entries: list[Entry]) -> None:
    """Load every --from run (config, data, newest checkpoint) before any expensive work, so a
    damaged or hostile checkpoint is refused before a judge is trained."""
    for e in entries:
        if e.reused:
            _, e.solver, _ = load_run(e.run_dir, device=e.run.train.device)
            e.train_seconds = recorded_train_seconds(e.run_dir)


def _check_inits(entries: list[Entry], data: PairData) -> None:
    """Load every warm start into a solver built for this comparison's data, before a judge is
    trained or anything written: another solver, no checkpoint or other shapes is refused here,
    not after the solvers before it have trained (train() loads it again for real)."""
    for e in entries:
        if not e.reused and e.run.init_from is not None:
            solver = build_solver(e.run, data, resolve_device(e.run.train.device))
            load_init(Path(e.run.init_from), solver)


def _train_entry(
    entry: Entry, data: PairData, judge: Judge | None, req: CompareRequest, log: Log
) -> None:
    tb = req.out / "tb" / entry.name
    try:
        result = train(entry.run, entry.run_dir, False, req.show_progress, tb, data, judge)
    except DivergenceError as err:
        entry.note = f"diverged: {err}"
        log(f"{entry.name}: {entry.note}")
        return
    if result.interrupted:
        raise KeyboardInterrupt
    entry.solver, entry.train_seconds = result.solver, float(result.metrics["train_seconds"])


def compare(req: CompareRequest, log: Log = print) -> CompareResult:
    """Train (or reuse) each solver, evaluate all the same way, write the report files."""
    if req.threads is None:
        return _compare(req, log)
    with torch_threads(req.threads):
        return _compare(req, log)


def _compare(req: CompareRequest, log: Log) -> CompareResult:
    entries, pair, seed = plan(req)
    check_out_path(req.out)
    data = load_pair(pair, entries[0].run.data, seed=seed)
    _load_reused(entries)
    _check_inits(entries, data)
    device = resolve_device(entries[0].run.train.device)
    judge = None
    if wants_judge(data):
        judge = get_judge(entries[0].run.data, seed, req.judge, device, log)
        log(f"judge {judge.key}: test accuracy {judge.accuracy:.4f}")
    rows: dict[str, dict[str, float]] = {}
    notes: dict[str, str] = {}
    trained = [e for e in entries if not e.reused]
    with deterministic_kernels():
        for k, e in enumerate(trained, start=1):
            log(f"solver {k} of {len(trained)}: training {e.name} ({e.run.train.steps} steps)")
            _train_entry(e, data, judge, req, log)
        log(f"evaluating {len(entries)} map(s) and the references")
        refs = reference_rows(data, judge, seed=seed)
        for e in entries:
            if e.solver is not None:
                m = evaluate_solver(e.solver, data, judge, seed)
            else:
                stochastic = "stochastic" in get_solver(e.run.solver).tags
                keys = list(next(iter(refs.values()), {})) + (["diversity"] if stochastic else [])
                m = {k: NAN for k in keys}
            rows[e.name] = {**m, "train_seconds": e.train_seconds}
            rows[e.name].update(recorded_selection(e.run_dir))
            if e.note:
                notes[e.name] = e.note
            log_tensorboard(req.out / "tb" / e.name, e.run, rows[e.name])
    all_rows = {**rows, **refs}
    warnings = quality_warnings(all_rows, judge)
    for w in warnings:
        log(f"warning: {w}")
    names = [e.name for e in entries]
    result = CompareResult(req.out, all_rows, names, judge, pair, seed, notes, warnings)
    write_outputs(result, entries, data, req)
    return result
