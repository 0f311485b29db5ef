"""Progress for every counted job (training steps, judge steps, comparison solvers, bench cells):
a bar with an ETA on a terminal, plain periodic lines when the output is piped (CI logs, nohup),
so long work is never silent and never a wall of carriage returns."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

PLAIN_EVERY_S = 30.0  # piped output: one line at most this often (and one at the end)


def _clock(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def short_losses(losses: dict[str, float] | None, limit: int = 3) -> str:
    return " ".join(f"{k}={v:.3g}" for k, v in list((losses or {}).items())[:limit])


class StepProgress:
    """`with StepProgress("not 3-5", total=350) as bar: ... bar.update(step, losses)`."""

    def __init__(
        self,
        description: str,
        total: int,
        completed: int = 0,
        enabled: bool = True,
        console: Console | None = None,
        every_s: float = PLAIN_EVERY_S,
    ) -> None:
        self.description, self.total, self.start = description, total, completed
        self.enabled = enabled
        self.console = console or Console()
        self.every_s = every_s
        self._bar: Progress | None = None
        self._task: Any = None
        self._t0 = self._last = 0.0
        self._done = completed

    def __enter__(self) -> StepProgress:
        self._t0 = self._last = time.perf_counter()
        if self.enabled and self.console.is_terminal:
            columns = [
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[note]}"),
            ]
            self._bar = Progress(*columns, console=self.console, transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task(
                self.description, total=self.total, completed=self.start, note=""
            )
        return self

    def update(
        self, completed: int, losses: dict[str, float] | None = None, note: str = ""
    ) -> None:
        self._done = completed
        text = note or short_losses(losses)
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, note=text)
            return
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.every_s or completed >= self.total):
            self._last = now
            self.console.print(self.line(completed, now, text), highlight=False, soft_wrap=True)

    def line(self, completed: int, now: float, text: str = "") -> str:
        """`not 3-5: 120/350 (34%) 0:02:41 elapsed, eta 0:05:09 loss_t=0.3`."""
        elapsed = now - self._t0
        rate = (completed - self.start) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - completed) / rate if rate > 0 else float("nan")
        pct = 100.0 * completed / max(self.total, 1)
        eta_text = _clock(eta) if eta == eta else "?"
        out = f"{self.description}: {completed}/{self.total} ({pct:.0f}%) {_clock(elapsed)} elapsed, eta {eta_text}"
        return f"{out} {text}".rstrip()

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
