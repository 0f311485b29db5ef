"""`otzoo bench w2`: baseline rows reproduce the published figures, cells resolve through the
config machinery, a tiny CLI run writes uvp.json / report.md / uvp.png, errors are one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from otzoo.bench import (
    DIMS,
    BenchResult,
    baselines,
    bench_overrides,
    parse_dims,
    resolve_cells,
    run_w2_bench,
    train_cell,
    write_outputs,
)
from otzoo.config import resolve
from otzoo.data import parse_pair
from otzoo.data.benchmarks import BEST_PUBLISHED, PUBLISHED
from otzoo.data.vectors import W2_ENV, known_map_pair, load_vector_pair
from otzoo.errors import ConfigError
from otzoo.registry import get_solver, list_solvers
from otzoo.solver import Solver
from tests.conftest import w2_dir, w2_required

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


W2_DIR = w2_dir()
needs_w2 = w2_required(DIMS)


class _VoxelOnly(Solver):
    tags = frozenset({"voxel", "neural"})

    def step(self, batches):
        return {}

    def transport(self, x, z=None):
        return x


class _Diverges(Solver):
    """Returns a NaN loss on its second step: the bench must record the cell as diverged."""

    tags = frozenset({"vector", "neural"})

    def step(self, batches):
        batches.x()
        return {"loss": float("nan") if self.steps_done >= 1 else 1.0}

    def transport(self, x, z=None):
        return x


@pytest.fixture(autouse=True)
def _test_solvers(monkeypatch):
    """Register the two test solvers for this module's tests only, so the contract test (which
    runs over every registered id) never sees them."""
    from otzoo import registry

    list_solvers()  # discover the real plugins first
    for sid, cls in (("bench-test-voxel-only", _VoxelOnly), ("bench-test-diverges", _Diverges)):
        monkeypatch.setitem(registry._SOLVERS, sid, cls)
        monkeypatch.setattr(cls, "id", sid)


def test_published_best_is_the_readme_row():
    assert [BEST_PUBLISHED[d] for d in DIMS] == [0.03, 0.22, 0.60, 0.80, 1.92]
    assert [PUBLISHED["[ID] identity"][d] for d in DIMS] == [32.7, 42.0, 58.6, 87.0, 121.0]


def test_parse_dims():
    assert parse_dims("2, 4,8") == [2, 4, 8]
    for bad in ("", "2,x", "0", "2,2"):
        with pytest.raises(ConfigError, match="--dims"):
            parse_dims(bad)


TUNED = ("not", "otm", "w2gn", "amortized")


def test_bench_settings_are_the_plugins_vector_defaults():
    """Each tuned solver carries its vector settings itself; the bench adds nothing, so
    `otzoo train --pair w2:D` and the bench train the same way."""
    for sid in TUNED:
        runs = resolve_cells([sid], list(DIMS), [], None, seed=0)
        for dim in DIMS:
            run, overrides = runs[sid, dim]
            assert overrides == bench_overrides(sid, dim) and overrides["batch_size"] == 256
            assert run == resolve(get_solver(sid), f"w2:{dim}", "quick", seed=0)
            for key, value in overrides.items():
                found = [getattr(c, key) for c in (run.train, run.solver_config) if hasattr(c, key)]
                assert found == [value]
    low, high = (resolve_cells(["not"], [d], [], None, 0)["not", d][0] for d in (8, 16))
    assert (low.solver_config.t_iters, high.solver_config.t_iters) == (3, 10)
    # voxel pairs and the tiny preset keep their own settings (not's digit pairs: batch 8)
    assert resolve(get_solver("not"), "3-5", "quick").train.batch_size == 8
    assert resolve(get_solver("not"), "w2:8", "tiny").train.lr_schedule == "constant"


def test_user_overrides_win_and_bad_keys_fail_up_front():
    runs = resolve_cells(["not"], [2], ["lr_t=0.123"], steps=7, seed=3)
    run, overrides = runs["not", 2]
    assert run.solver_config.lr_t == 0.123 and run.train.steps == 7 and run.seed == 3
    assert overrides["lr_t"] == 0.123
    with pytest.raises(ConfigError, match="unknown key"):
        resolve_cells(["not"], [2], ["no_such_key=1"], None, 0)


def test_lr_schedule_follows_steps_unless_set():
    run, _ = resolve_cells(["amortized"], [2], [], steps=7, seed=0)["amortized", 2]
    assert run.train.steps == 7 and run.train.decay_steps() == 7
    run, _ = resolve_cells(["amortized"], [2], ["lr_decay_steps=3"], 7, 0)["amortized", 2]
    assert run.train.decay_steps() == 3
    run, _ = resolve_cells(["amortized"], [2], [], None, 0)["amortized", 2]
    assert run.train.decay_steps() == run.train.steps == 5000


def test_solver_without_vector_tag_is_refused():
    with pytest.raises(ConfigError, match="does not support vector data") as err:
        resolve_cells(["bench-test-voxel-only"], [2], [], None, 0)
    assert "\n" not in str(err.value)


def test_untrained_residual_map_scores_as_the_identity():
    """A zero CPU budget trains nothing; NOT's residual map is then exactly the identity."""
    spec = parse_pair("gauss:3")
    data = load_vector_pair(spec, seed=0, n_train=64, n_test=8)
    run = resolve(get_solver("not"), "gauss:3", "tiny", {"steps": 50}, seed=0)
    cell = train_cell(run, data, cpu_budget_s=0.0)
    assert (cell.steps, cell.status) == (0, "cpu budget")
    ident = baselines(data.known, seed=0)["[ID]"]
    assert cell.uvp == pytest.approx(ident["l2_uvp"], rel=1e-6)


def test_training_learns_the_map_of_a_gaussian_pair():
    """gauss:2:1 (tests/test_learning.py): the identity scores 100.6%, the constant map to Q's
    mean 101.6% and the mean shift 44.7%; a trained cell must be far below all three."""
    data = load_vector_pair(parse_pair("gauss:2:1"), seed=0, n_train=64, n_test=8)
    sets = {"steps": 300, "batch_size": 128, "t_iters": 3, "lr_t": 3e-3, "lr_f": 3e-3}
    run = resolve(get_solver("not"), "gauss:2:1", "tiny", sets, seed=0)
    cell = train_cell(run, data)
    base = baselines(data.known, seed=0)
    assert cell.status == "ok" and cell.steps == 300 and cell.cpu_s > 0
    assert base["[ID]"]["l2_uvp"] > 90 and cell.uvp < 5.0
    assert cell.cosine > 0.99


def test_diverged_cell_is_recorded_and_reported(tmp_path):
    data = load_vector_pair(parse_pair("gauss:2"), seed=0, n_train=16, n_test=8)
    run = resolve(get_solver("bench-test-diverges"), "gauss:2", "tiny", {"steps": 10}, seed=0)
    cell = train_cell(run, data)
    assert (cell.status, cell.steps, cell.uvp) == ("diverged", 2, None)
    ident = {"l2_uvp": 50.0, "cosine": 0.0}
    result = BenchResult([cell], {"[ID]": {2: ident}, "[L]": {2: ident}}, 0, "cmd", "m")
    write_outputs(result, tmp_path)
    assert json.loads((tmp_path / "uvp.json").read_text()) == {"bench-test-diverges": {"2": None}}
    assert "| bench-test-diverges | diverged |" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "uvp.png").read_bytes()[:8] == PNG_MAGIC


@needs_w2
def test_bench_baseline_rows_reproduce_the_published_figures():
    """[ID] and [L] rows as the bench computes them, within ~3% sampling noise (dims 2..32)."""
    for dim in DIMS:
        rows = baselines(known_map_pair(parse_pair(f"w2:{dim}"), W2_DIR), seed=0)
        assert rows["[ID]"]["l2_uvp"] == pytest.approx(PUBLISHED["[ID] identity"][dim], rel=0.03)
        assert rows["[L]"]["l2_uvp"] == pytest.approx(
            PUBLISHED["[L] linear Bures map"][dim], rel=0.03
        )
        assert rows["[ID]"]["cosine"] == 0.0 and 0.6 < rows["[L]"]["cosine"] < 0.9


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "otzoo", "bench", "w2", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@needs_w2
def test_cli_tiny_bench_writes_json_report_and_plot(tmp_path):
    out = tmp_path / "bench"
    args = ["--solvers", "not", "--dims", "2", "--weights", str(W2_DIR), "--steps", "5"]
    proc = _bench(*args, "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    uvp = json.loads((out / "uvp.json").read_text())
    assert list(uvp) == ["not"] and list(uvp["not"]) == ["2"]
    assert 0.0 < uvp["not"]["2"] < 100.0
    report = (out / "report.md").read_text()
    assert "otzoo bench w2 --solvers not" in report and "| not | 2 |" in report
    assert "| best published | 0.03 |" in report and "Seed: 0" in report
    assert (out / "uvp.png").read_bytes()[:8] == PNG_MAGIC
    results = json.loads((out / "results.json").read_text())
    assert results["cells"][0]["steps"] == 5
    assert results["baselines"]["[ID]"]["2"]["l2_uvp"] == pytest.approx(32.7, rel=0.03)
    assert "best published" in proc.stdout
    again = _bench(*args, "--out", str(out), "--quiet")
    assert again.returncode == 2 and "already holds a benchmark" in again.stderr


def test_cli_missing_weights_is_one_line_error(tmp_path):
    args = ["--solvers", "not", "--dims", "2", "--steps", "1", "--out", str(tmp_path / "o")]
    proc = _bench(*args, "--weights", str(tmp_path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "2_v1.pt") in lines[0]
    assert not (tmp_path / "o" / "uvp.json").exists()


def test_cli_without_weights_or_env_asks_for_weights(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from otzoo.cli import app

    monkeypatch.delenv(W2_ENV, raising=False)
    args = ["bench", "w2", "--solvers", "not", "--dims", "2", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, ConfigError)
    assert "--weights" in str(result.exception) and "\n" not in str(result.exception)


def test_dims_all_takes_every_dimension_in_the_folder(tmp_path):
    for d in (2, 64):
        for v in ("v1", "v2"):
            (tmp_path / f"{d}_{v}.pt").write_bytes(b"")
    (tmp_path / "8_v1.pt").write_bytes(b"")  # without its v2: not a usable dimension
    assert parse_dims("all", tmp_path) == [2, 64]
    with pytest.raises(ConfigError, match="no benchmark files"):
        parse_dims("all", tmp_path / "empty")


def test_published_table_has_the_larger_dimensions():
    """A user who runs dim 64 or 128 sees what to compare with."""
    assert BEST_PUBLISHED[64] == 2.08 and BEST_PUBLISHED[128] == 0.67
    assert "128" not in str(PUBLISHED["[MM:R] reversed minimax (NOT/OTM form)"].keys())  # diverged


@pytest.mark.parametrize("minutes", [0.0, -1.0, float("nan")])
def test_a_cpu_budget_that_is_not_positive_is_refused_before_anything_is_written(tmp_path, minutes):
    with pytest.raises(ConfigError, match="--cpu-budget") as err:
        run_w2_bench(["not"], [2], tmp_path, tmp_path / "o", cpu_budget_min=minutes)
    assert "\n" not in str(err.value) and not (tmp_path / "o").exists()
