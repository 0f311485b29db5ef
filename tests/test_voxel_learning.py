"""Slow: every neural solver maps 3D threes to fives on a small problem (8^3 voxels, 80 training
digits per side, the solver's quick preset for 300 steps), judged by the validated small judge
(tests/conftest.py `judge8`). Run before a release and by anyone changing a solver:

    .venv/bin/python -m pytest -m slow tests/test_voxel_learning.py

The identity map scores 0.00 target accuracy here (no three is called a five); "well above"
means at least 0.5. A solver that cannot yet do this is marked xfail(strict) with its measured
result, so the mark must go when it learns (on 2026-12-02 none could: see KNOWN_FAILING).
"""

from __future__ import annotations

import pytest

from otzoo.config import resolve
from otzoo.evaluate import evaluate_solver
from otzoo.registry import get_solver
from otzoo.train import train
from tests.conftest import JUDGE_DATA_SETTINGS

STEPS = 300
MIN_ACCURACY = 0.5
NEURAL = ["not", "not-weak", "otm", "w2gn", "amortized"]
# Measured 2026-12-02 (this file, seed 0): the map each solver ends with after 300 steps. At
# 8^3 the saddles swing: `not` reached 0.75 at step 200 with 400 digits per side, then fell
# back to near the identity (0.03) by step 400. Making them learn stably is issue 14.
KNOWN_FAILING: dict[str, str] = {
    "not": "issue 14: ends at 0.20 with the quick preset's batch 8, EMA 0.99 and r1=300 "
    "(2026-12-05; 0.10 at batch 16, 0.15 at batch 32, 0.35 before R1)",
    "not-weak": "issue 14: ends at 0.15 with the quick preset's r1=300, 2 noise draws, hue "
    "plane, context FiLM, EMA 0.995 and channels-last nets (2026-12-06; 0.15 without the layout, "
    "with 4 and 8 draws; 0.25 before R1)",
    "otm": "issue 14: ends at 0.25 with the quick preset's quadratic psi, R1, batch 4 and EMA "
    "0.995 (2026-12-05; 0.40 at batch 16, 0.35 at batch 32, 0.25 before)",
    "w2gn": "issue 14: ends at 0.25 with the dense potential (0.00 with the conv one)",
    "amortized": "issue 14: ends at 0.40 with the quick preset's hue plane at transport "
    "(2026-12-06; purity 0.995, lit 0.334, transport cost 0.027); the same f transported by the "
    "free search: 0.50, purity 0.942, lit 0.368 (cost 0.043); grad f as the map: 0.35",
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "solver_id",
    [
        pytest.param(s, marks=pytest.mark.xfail(strict=True, reason=KNOWN_FAILING[s]))
        if s in KNOWN_FAILING
        else s
        for s in NEURAL
    ],
)
def test_neural_solver_maps_threes_to_fives(solver_id, judge8, tmp_path):
    from otzoo.data import load_pair

    cls = get_solver(solver_id)
    run = resolve(cls, "3-5", "quick", {**JUDGE_DATA_SETTINGS, "steps": STEPS}, seed=0)
    result = train(run, tmp_path / "run", show_progress=False)
    data = load_pair("3-5", run.data, seed=0)
    identity = evaluate_solver_identity(data, judge8)
    m = evaluate_solver(result.solver, data, judge8)
    print(solver_id, {k: round(v, 3) for k, v in m.items()})
    assert identity <= 0.1
    assert m["target_accuracy"] >= MIN_ACCURACY, m
    assert m["color_preservation"] >= 0.9, m


def evaluate_solver_identity(data, judge) -> float:
    from otzoo.evaluate import evaluate

    return evaluate(lambda x: x, data, judge)["target_accuracy"]
