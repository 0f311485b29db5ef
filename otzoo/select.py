"""The map a run ends with, chosen on training data only (`--set select_every=N`).

A saddle solver's map can be at its best mid-run and then drift: the potential's slope off the
data grows with its steps and the map follows it into haze (docs/results.md, "Map selection"). With
`select_every` N > 0 the trainer scores the map every N steps on fixed training samples (never
the test split), keeps a copy of the networks with the best score, and ends the run with that
copy: the final metrics, `compare`'s row and pictures, `eval`/`render` of the folder and a
warm start from it (`--init-from`) all use it (otzoo.runs.as_reported). The copy is part of
every checkpoint, so a resumed run keeps it, and a continued one (`--resume --steps` more)
trains on from its last state, not from the copy. Solvers without networks (the discrete
baselines fit their map from the data) have nothing to choose: the option is ignored there.

The score is the energy distance (Szekely and Rizzo) between the mapped training sources and
the training targets in data space: label-free, judge-free, defined for voxels and vectors
alike, with no kernel width or entropic scale to tune.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from otzoo.data import PairData
from otzoo.evaluate import apply_map
from otzoo.metrics.basic import energy_distance
from otzoo.runtime import seeded_rng
from otzoo.solver import Solver


@dataclass
class Chosen:
    """The best map seen so far: its step, its score and its networks (CPU tensors)."""

    step: int
    score: float
    modules: dict[str, dict[str, torch.Tensor]]


class MapSelector:
    """Scores a solver's map on the first `samples` training pairs and keeps the best one."""

    def __init__(self, data: PairData, samples: int, seed: int = 0) -> None:
        n = min(samples, len(data.x_train), len(data.y_train))
        self.x, self.y, self.seed = data.x_train[:n], data.y_train[:n], seed
        self.chosen: Chosen | None = None

    def score(self, solver: Solver) -> float:
        """Energy distance between T(x_train) and y_train (seeded noise; the caller's RNG
        stream is untouched, so selecting does not change what the run trains on)."""
        with seeded_rng(self.seed, solver.device):
            tx = apply_map(solver, self.x)
        return energy_distance(tx, self.y)

    def offer(self, solver: Solver) -> float:
        """Score the solver's current map; keep a copy of its networks if it is the best."""
        value = self.score(solver)
        if math.isfinite(value) and (self.chosen is None or value < self.chosen.score):
            self.chosen = Chosen(solver.steps_done, value, _networks(solver))
        return value

    def state(self) -> dict[str, Any] | None:
        """What a checkpoint stores (None before the first score)."""
        c = self.chosen
        return None if c is None else {"step": c.step, "score": c.score, "modules": c.modules}

    def load_state(self, state: dict[str, Any] | None) -> None:
        if state is not None:
            self.chosen = Chosen(int(state["step"]), float(state["score"]), state["modules"])

    def use_chosen(self, solver: Solver) -> int | None:
        """Load the chosen networks into `solver` (its optimizers and step count stay); the
        chosen step, or None when nothing was scored."""
        if self.chosen is None:
            return None
        for k, m in solver.modules.items():
            m.load_state_dict(self.chosen.modules[k])
        return self.chosen.step

    @contextmanager
    def chosen_in(self, solver: Solver) -> Iterator[int | None]:
        """The chosen map in `solver` for the block (to measure what a user would get if the
        run stopped now), the live networks back afterwards; yields the chosen step."""
        live = _networks(solver)
        try:
            yield self.use_chosen(solver)
        finally:
            for k, m in solver.modules.items():
                m.load_state_dict(live[k])


def _networks(solver: Solver) -> dict[str, dict[str, torch.Tensor]]:
    """A CPU copy of every network's state (what `Chosen.modules` holds)."""
    return {
        k: {n: t.detach().cpu().clone() for n, t in m.state_dict().items()}
        for k, m in solver.modules.items()
    }
