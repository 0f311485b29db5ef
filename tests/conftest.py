"""Shared fixtures: tiny run settings and a helper to run the CLI as a user would.

Tests run one torch thread per process (and pytest-xdist runs one process per core): the
networks here are tiny, and two threads per process on a 2-core machine fight each other
(measured up to ~40x slower under load). Subprocesses inherit OMP_NUM_THREADS.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

if TYPE_CHECKING:
    from otzoo.solver import PairInfo

os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

TINY = ["--preset", "tiny", "--quiet"]

# Metrics a deterministic map of voxel digits does not get (they need noise to vary, clean
# originals, a known map or an ODE): such a map gets every other metric otzoo reports.
METRICS_OF_OTHER_MAPS = frozenset(
    {"diversity", "mse_to_clean", "l2_uvp", "cosine", "nfe", "straightness"}
)


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """Judges trained by tests go to a session folder, never to the user's ~/.cache/otzoo
    (one folder per xdist worker; tests that need their own set OTZOO_CACHE themselves)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OTZOO_CACHE", str(tmp_path_factory.mktemp("otzoo-cache")))
        yield


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python -m otzoo ARGS` as a user would (separate process, real exit code)."""
    return subprocess.run(
        [sys.executable, "-m", "otzoo", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli


def Batches(sample_x, sample_y, batch_size: int, seed: int = 1):  # noqa: N802 (reads as a class)
    """Fresh samples on every call, drawn by `sample(n, generator)`: otzoo's BatchSampler."""
    from otzoo.batches import from_draws

    return from_draws(sample_x, sample_y, batch_size, seed)


def pair_batches(pair, batch_size: int):
    """Batches drawing fresh samples of a KnownMapPair's P and Q."""
    return Batches(pair.sample_x, pair.sample_y, batch_size)


def tensor_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int):
    """Batches drawing random rows of fixed tensors."""
    from otzoo.batches import from_tensors

    return from_tensors(x, y, batch_size, seed=1)


def fit(solver, batches, steps: int, **kw) -> dict[str, float]:
    """`steps` more outer steps through the one training loop; the last losses."""
    from otzoo.loop import run_steps

    seen: list[dict[str, float]] = [{}]
    run_steps(
        solver, batches, solver.steps_done + steps, on_step=lambda i: seen.append(i.losses), **kw
    )
    return seen[-1]


def one_colored_blobs() -> tuple[PairInfo, torch.Tensor, torch.Tensor]:
    """(info, x, y): 8 source and 8 target 3 x 8^3 grids of random blobs, each painted in one
    rgby color (sample i in color i % 4 on both sides), seeded: for the hue-plane tests."""
    from otzoo.data.transforms import paint
    from otzoo.solver import PairInfo

    torch.manual_seed(0)
    colors = torch.arange(8) % 4
    x = paint((torch.rand(8, 8, 8, 8) > 0.7) * 0.6, "rgby", colors, torch.zeros(8)) * 2 - 1
    y = paint((torch.rand(8, 8, 8, 8) > 0.6) * 0.6, "rgby", colors, torch.zeros(8)) * 2 - 1
    return PairInfo(kind="voxel", x_shape=(3, 8, 8, 8), y_shape=(3, 8, 8, 8)), x, y


def off_hue_plane(moves: torch.Tensor, x: torch.Tensor) -> float:
    """Largest per-voxel part of `moves` [N, C, ...] outside the plane of gray and each
    sample's mean chroma (least squares on that basis, independent of otzoo's own projection)."""
    mean = x.mean(dim=(2, 3, 4))
    worst = 0.0
    for i in range(x.shape[0]):
        basis = torch.stack([torch.ones(x.shape[1]), mean[i] - mean[i].mean()], dim=1)
        m = moves[i].reshape(x.shape[1], -1)
        worst = max(worst, float((m - basis @ torch.linalg.lstsq(basis, m).solution).abs().max()))
    return worst


def w2_dir() -> Path | None:
    """The W2 benchmark folder for tests, from $OTZOO_W2BENCH_DIR only (.ci/run sets it).
    None when unset: tests that need the files skip, naming the variable."""
    from otzoo.data.vectors import W2_ENV

    value = os.environ.get(W2_ENV, "").strip()
    return Path(value) if value else None


def w2_required(dims=(2, 4, 8, 16, 32)):
    """Skip when $OTZOO_W2BENCH_DIR is unset; when it is set, its files must be there (a CI
    that points at a folder without them fails instead of skipping silently)."""
    from otzoo.data.vectors import W2_ENV

    folder = w2_dir()
    if folder is not None:
        missing = [
            f"{d}_{v}.pt"
            for d in dims
            for v in ("v1", "v2")
            if not (folder / f"{d}_{v}.pt").is_file()
        ]
        assert not missing, f"{W2_ENV}={folder} lacks {missing}"
    return pytest.mark.skipif(folder is None, reason=f"W2 benchmark files: set {W2_ENV}")


# A judge that discriminates, for tests of the judged metrics: 8^3 digits, 100 per class,
# 1,200 Adam steps (~8 s on one thread). Measured 2026-12-02: 0.845 test accuracy over the ten
# digits, 0.75 on fives, no three called a five; tests/test_judge.py asserts its accuracy.
JUDGE_DATA_SETTINGS = {"grid": 8, "max_per_digit": 100}
JUDGE_SETTINGS = {
    "epochs": 1,
    "min_steps": 1200,
    "max_steps": 1200,
    "batch_size": 32,
    "base": 8,
    "feature_dim": 32,
}


@pytest.fixture(scope="session")
def judge_cache(tmp_path_factory) -> Path:
    """$OTZOO_CACHE for the judges tests train (the small `judge8`; the slow tests' default
    one): one folder for the session, shared by the xdist workers, so each is usually trained
    once in all."""
    root = tmp_path_factory.getbasetemp()
    return (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "judge-cache"


@pytest.fixture(scope="session")
def judge8(judge_cache):
    """The small discriminating judge (see JUDGE_SETTINGS), trained once and cached."""
    from otzoo.data import DataConfig
    from otzoo.judge import JudgeConfig, get_judge

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OTZOO_CACHE", str(judge_cache))
        return get_judge(DataConfig(**JUDGE_DATA_SETTINGS), 0, JudgeConfig(**JUDGE_SETTINGS))


def run_main(*args: str) -> tuple[int, str, str]:
    """`otzoo ARGS` in this process (fast; for many cases): (exit status, stdout, stderr)."""
    import contextlib
    import io

    from otzoo.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["otzoo", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def files_under(path: Path) -> dict[str, int]:
    """Every file below `path` with its modification time (ns): what a refusal must not change."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}
