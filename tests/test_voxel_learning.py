"""Slow: every neural solver maps 3D threes to fives on the task its quick preset was tuned for
(3-5, 16^3 voxels, 400 digits per side, seed 0), judged by the default judge (trained once in
the session, ~3 CPU minutes). ~45 CPU minutes in all on a 2-core AMD EPYC without AVX-512
(2026-12-07; 2-5 a solver, `otcfm` 13: its step ran ~3x slower there than in the benchmark runs
it was tuned with). Run before a release and by anyone changing a solver:

    .venv/bin/python -m pytest -m slow tests/test_voxel_learning.py -n 2

Each solver trains for a few minutes: the steps at which `benchmarks/time_to_quality.py` saw
it pass 0.95 target accuracy (README, "Where the targets stand"), with some margin; a preset
with a cosine decay gets it over these steps. The identity scores 0.01 here; the bar is 0.80,
low enough for a seed's swing and far above a solver that stopped learning. The run skips the
preset's evaluations and pictures during training (an `otcfm` evaluation integrates its ODE).
Until 2026-12-07 this test ran at 8^3 for 300 steps, where no solver's preset learned, so every
case was an expected failure and a broken solver passed it.
"""

from __future__ import annotations

import pytest

from otzoo.config import resolve
from otzoo.evaluate import evaluate, evaluate_solver
from otzoo.registry import get_solver
from otzoo.train import train

# Steps per solver: about the training minutes at which each quick preset passed 0.95 on seeds
# 0 / 1 in the benchmark runs, plus a margin; in brackets the minutes that makes at those rates.
STEPS = {
    "not": 500,  # (3.5) 0.95 at 3.0 min, ~145 steps a minute
    "not-weak": 450,  # (4.6) 0.95 at 4.0 min, ~100 a minute
    "otm": 900,  # (3.4) 0.95 at 3.0 min, ~260 a minute
    "w2gn": 350,  # (3) its whole preset: 300 of identity pre-training, then the pair
    "amortized": 200,  # (4.6) 0.95 at 2-4 min of a 650-step cosine; here the decay spans 200
    "enot": 1500,  # (1.6) 0.95 at 1-2 min of a 4,000-step cosine; here it spans 1,500
    "otcfm": 600,  # 0.95 at 3.0 min at ~160 a minute (docs/results.md); here ~47: 13 min
}
MIN_ACCURACY = 0.80


@pytest.fixture(scope="session")
def judge16(judge_cache):
    """The default judge of the 3-5 data, cached for the session in the workers' shared folder."""
    from otzoo.data import DataConfig
    from otzoo.judge import get_judge

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OTZOO_CACHE", str(judge_cache))
        return get_judge(DataConfig(), 0)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # otcfm's case took 13 min (AMD EPYC), after the judge's ~3 in setup
@pytest.mark.parametrize("solver_id", list(STEPS))
def test_neural_solver_maps_threes_to_fives(solver_id, judge16, tmp_path):
    from otzoo.data import load_pair
    from otzoo.judge import JudgeConfig, judge_key

    quiet = {"eval_every": 0, "image_every": 0}  # training only, as the benchmark's clock
    values = {"steps": STEPS[solver_id], **quiet}
    run = resolve(get_solver(solver_id), "3-5", "quick", values, seed=0)
    assert judge16.key == judge_key(run.data, 0, JudgeConfig()), "a judge of other data"
    result = train(run, tmp_path / "run", show_progress=False)
    data = load_pair("3-5", run.data, seed=0)
    identity = evaluate(lambda x: x, data, judge16)["target_accuracy"]
    m = evaluate_solver(result.solver, data, judge16)
    print(solver_id, {k: round(v, 3) for k, v in m.items()})
    assert identity <= 0.05
    assert m["target_accuracy"] >= MIN_ACCURACY, m
    assert m["color_preservation"] >= 0.95, m
    assert m["color_purity"] >= 0.80, m
