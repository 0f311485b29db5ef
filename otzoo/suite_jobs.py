"""`otzoo suite --jobs N`: up to N cells at once, each in a worker process.

Processes, not threads: a cell trains with torch, whose thread pool and global RNG belong to a
process. A "spawn" worker starts with none of the parent's torch state (forking a process that
has used torch is not safe), sets the suite's torch threads, and runs the very function the
sequential path runs (otzoo.suite.run_cell: seeds and deterministic kernels are set inside
compare), so a cell gives the same metrics whatever N. Measured on a 2-core CPU: two one-thread
trainings at once each run at about the speed of one alone, while one training on two threads
is only 1.8x faster than on one, so `--jobs 2 --threads 1` gets through a grid fastest.

The parent keeps the suite's lock and its plan; a worker writes its cell's cell.json just as the
sequential path does, so an interrupted suite resumes the same way. Workers run without progress
bars and print nothing to stdout (N of them at once would garble the terminal); the parent
prints one line per cell started and finished. Ctrl-C or SIGTERM in the parent kills the
workers (the cells they had not finished are redone on resume, as compare cannot continue a
half-trained run), and a worker whose parent is gone (kill -9) exits by itself, so no worker
outlives the suite to write into a cell that a resumed suite is redoing.

Two cells that need the same judge not yet cached (the judge depends on the data variant, not
on the pair) may both train it at once: harmless, as the judge is a pure function of its key
and its cache files are written atomically.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from otzoo.errors import OtzooError
from otzoo.report import format_value
from otzoo.runtime import torch_threads

if TYPE_CHECKING:
    from otzoo.suite import CellPlan
    from otzoo.suite_cells import CellResult

Log = Callable[[str], None]
RunCell = Callable[["CellPlan", list[str], Log], "CellResult"]
PARENT_POLL_S = 1.0  # how often a worker checks that the suite process still exists


@dataclass
class CellOutcome:
    """What a worker sends back: the cell's result, or the one-line reason its comparison
    failed (its data, its device: the other cells go on), and its wall seconds."""

    name: str
    result: CellResult | None
    error: str | None
    seconds: float


def _drop(_msg: str) -> None:
    """A worker's log: compare's lines from N cells at once would interleave unreadably; the
    parent prints one line per cell, and notes and warnings travel in the CellResult."""


def _worker_init(parent: int) -> None:
    """Leave Ctrl-C to the parent, which kills every worker at once (no traceback from each
    idle worker); leave stdout to the parent's lines (the judge's progress bar shows whatever
    compare's show_progress says, and N bars at once garble the terminal; warnings and errors
    still reach stderr); exit when the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (the worker's whole life)
    watch = threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True)
    watch.start()


def _exit_with_parent(parent: int) -> None:
    """A killed parent (kill -9) cannot kill its workers; an orphan would go on writing into a
    cell that the resumed suite clears and redoes."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def run_cell_in_worker(run: RunCell, cp: CellPlan, ids: list[str], threads: int) -> CellOutcome:
    """One cell in a worker: `run` is the sequential path's otzoo.suite.run_cell (passed by
    reference, so this module imports nothing of the suite's), under the suite's torch threads,
    without progress bars; a failure of the cell's own (an OtzooError) is returned as its
    reason."""
    assert cp.request is not None
    start = time.perf_counter()
    quiet = replace(cp, request=replace(cp.request, show_progress=False))
    try:
        with torch_threads(threads):
            result = run(quiet, ids, _drop)
    except OtzooError as err:
        return CellOutcome(cp.cell.name, None, str(err), time.perf_counter() - start)
    return CellOutcome(cp.cell.name, result, None, time.perf_counter() - start)


def finished_line(outcome: CellOutcome) -> str:
    """'cell 3-5_z_extruded: finished in 41.2 s; target_accuracy: not 0.93, otm 0.88', or its
    failure in the sequential path's words."""
    if outcome.result is None:
        return f"cell {outcome.name} failed: {outcome.error}"
    r = outcome.result
    acc = ", ".join(f"{s} {format_value(r.rows[s].get('target_accuracy'))}" for s in r.solver_names)
    notes = "".join(f"; {name}: {note}" for name, note in r.notes.items())
    return (
        f"cell {outcome.name}: finished in {outcome.seconds:.1f} s; target_accuracy: {acc}{notes}"
    )


def run_in_workers(
    run: RunCell, todo: list[CellPlan], ids: list[str], jobs: int, threads: int, log: Log
) -> dict[str, CellOutcome]:
    """`run` each cell of `todo` (grid order) on min(jobs, len(todo)) workers, dispatched in
    that order as workers free up; the outcome of every cell by name. A worker's bug, a dead
    worker or an interrupt kills the other workers and is raised. `run` must be importable (a
    module-level function), and a script that calls this needs `if __name__ == "__main__":`
    (spawned workers import the main module)."""
    n = min(jobs, len(todo))
    order = {cp.cell.name: i for i, cp in enumerate(todo)}
    queue = deque(todo)
    running: dict[Future[CellOutcome], CellPlan] = {}
    outcomes: dict[str, CellOutcome] = {}
    pool = ProcessPoolExecutor(
        n,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(os.getpid(),),
    )
    try:
        with _sigterm_as_interrupt():
            while queue or running:
                while queue and len(running) < n:  # at most n submitted: each starts at once
                    cp = queue.popleft()
                    running[pool.submit(run_cell_in_worker, run, cp, ids, threads)] = cp
                    log(f"cell {cp.cell.name}: started ({order[cp.cell.name] + 1} of {len(todo)})")
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=lambda f: order[running[f].cell.name]):
                    cp = running.pop(fut)
                    outcomes[cp.cell.name] = _outcome(fut, cp)
                    log(finished_line(outcomes[cp.cell.name]))
    except BaseException:
        _kill_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return outcomes


def _outcome(fut: Future[CellOutcome], cp: CellPlan) -> CellOutcome:
    """The worker's outcome; a worker that died (killed, out of memory) is one line."""
    try:
        return fut.result()
    except BrokenProcessPool:
        raise OtzooError(
            f"cell {cp.cell.name}: its worker process died (out of memory? killed?); rerun the "
            "same command to resume (finished cells are kept), with fewer --jobs if memory is short"
        ) from None


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """Stop every worker now: what a worker had not finished is redone on resume anyway, so
    there is nothing to save by waiting for it."""
    kill = getattr(pool, "kill_workers", None)  # Python 3.14+
    if callable(kill):
        kill()
        return
    procs: dict[int, Any] = getattr(pool, "_processes", None) or {}
    for p in list(procs.values()):
        p.kill()
    for p in list(procs.values()):
        p.join(timeout=10)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the parent as Ctrl-C does (workers killed, exit 130), as the sequential
    path's training turns either signal into an interrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
