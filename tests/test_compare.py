"""The comparison harness: one CLI run end to end, determinism, --from reuse, --set routing,
and errors refused before anything is written."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import pytest

from otzoo.compare import CompareRequest, compare, plan, route_overrides
from otzoo.errors import CheckpointError, ConfigError
from otzoo.judge import JudgeConfig
from otzoo.report import METRIC_NAMES
from tests.conftest import METRICS_OF_OTHER_MAPS, run_cli
from tests.test_cli import assert_one_line_error

TINY_JUDGE = JudgeConfig(epochs=1, min_steps=20, batch_size=16, base=4, feature_dim=16)
DETERMINISTIC_KEYS = set(METRIC_NAMES) - METRICS_OF_OTHER_MAPS


def quiet(_msg: str) -> None:
    pass


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OTZOO_CACHE", str(tmp_path / "cache"))


def tiny_request(out, **kw) -> CompareRequest:
    base = dict(
        out=out,
        solvers=("not", "not-weak"),
        pair="3-5",
        preset="tiny",
        values={"steps": 2, "device": "cpu"},
        judge=TINY_JUDGE,
        show_progress=False,
    )
    return CompareRequest(**{**base, **kw})


def test_cli_compare_writes_everything(tmp_path):
    out = tmp_path / "cmp"
    res = run_cli(
        "compare", "--solvers", "not,not-weak", "--pair", "3-5", "--preset", "tiny",
        "--steps", "3", "--threads", "1", "--quiet", "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    for f in ("report.md", "metrics.json", "metrics.csv", "samples.png", "loss.png"):
        assert (out / f).is_file(), f
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"not", "not-weak"}
    assert set(metrics["not"]) == DETERMINISTIC_KEYS | {"train_seconds"}
    assert set(metrics["not-weak"]) == set(metrics["not"]) | {"diversity"}
    assert all(isinstance(v, float) for m in metrics.values() for v in m.values())
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["map"] for r in rows] == ["not", "not-weak", "identity", "real target"]
    assert float(rows[2]["transport_cost"]) == 0.0 and float(rows[2]["color_preservation"]) == 1
    report = (out / "report.md").read_text()
    assert "| not-weak |" in report and "samples.png" in report and "test accuracy" in report
    assert "loss.png" in report and "weakest digits, with what it takes them for:" in report
    assert "identity" in res.stdout and "real target" in res.stdout

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for sid in ("not", "not-weak"):
        acc = EventAccumulator(str(out / "tb" / sid))
        acc.Reload()
        scalars = acc.Tags()["scalars"]
        assert "metrics/fid" in scalars and "metrics/target_accuracy" in scalars
        assert any(t.startswith(f"{sid}/loss") for t in scalars)  # training curves, same folder
        assert "_hparams_/session_start_info" in acc.summary_metadata

    # `otzoo eval` on one of the runs scores it exactly as the comparison did
    res = run_cli("eval", str(out / "runs" / "not"), "--out", str(tmp_path / "e.json"))
    assert res.returncode == 0, res.stderr
    evaluated = json.loads((tmp_path / "e.json").read_text())["metrics"]
    assert evaluated == pytest.approx(metrics["not"])


def test_unknown_solver_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "cmp"
    res = run_cli("compare", "--solvers", "not,nott", "--pair", "3-5", "--out", str(out))
    assert_one_line_error(res, "unknown solver 'nott'", "not-weak")
    assert not out.exists()


def test_same_seed_gives_identical_metrics(tmp_path):
    a = compare(tiny_request(tmp_path / "a"), log=quiet)
    b = compare(tiny_request(tmp_path / "b"), log=quiet)
    ja = json.loads((tmp_path / "a" / "metrics.json").read_text())
    jb = json.loads((tmp_path / "b" / "metrics.json").read_text())
    for sid in ("not", "not-weak"):
        ja[sid].pop("train_seconds"), jb[sid].pop("train_seconds")
    assert ja == jb
    assert a.rows["identity"] == b.rows["identity"]
    c = compare(tiny_request(tmp_path / "c", seed=1, solvers=("not",)), log=quiet)
    assert c.rows["not"]["fid"] != a.rows["not"]["fid"]

    # --from reuses finished runs: same numbers, their recorded training time, nothing retrained
    runs = (tmp_path / "a/runs/not", tmp_path / "b/runs/not")
    d = compare(tiny_request(tmp_path / "d", solvers=(), from_runs=runs), log=quiet)
    assert d.solver_names[0] == "not" and d.solver_names[1].startswith("not@")
    assert d.rows["not"] == pytest.approx(a.rows["not"])
    assert d.rows[d.solver_names[1]] == pytest.approx(b.rows["not"])
    assert not (tmp_path / "d" / "runs").exists() and (tmp_path / "d" / "report.md").is_file()


def test_refuses_before_writing(tmp_path):
    out = tmp_path / "cmp"
    with pytest.raises(ConfigError, match="no listed solver"):
        plan(tiny_request(out, sets=("bogus_key=1",)))
    with pytest.raises(ConfigError, match="needs --solvers"):
        plan(tiny_request(out, solvers=()))
    with pytest.raises(CheckpointError, match="not a run folder"):
        plan(tiny_request(out, from_runs=(tmp_path,)))
    assert not out.exists()
    # an output folder that already holds a run is refused before any training
    (out / "runs" / "not").mkdir(parents=True)
    (out / "runs" / "not" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds a run"):
        plan(tiny_request(out))


def test_from_run_of_other_data_is_refused(tmp_path):
    compare(tiny_request(tmp_path / "a", solvers=("not",)), log=quiet)
    run = (tmp_path / "a" / "runs" / "not",)
    with pytest.raises(ConfigError, match="pair"):
        plan(tiny_request(tmp_path / "b", pair="3-6", from_runs=run))
    with pytest.raises(ConfigError, match="data settings"):
        plan(tiny_request(tmp_path / "b", sets=("grid=9",), from_runs=run))
    with pytest.raises(ConfigError, match="seed"):
        plan(tiny_request(tmp_path / "b", seed=2, from_runs=run))


def test_set_keys_route_to_the_solvers_that_know_them():
    routed = route_overrides(["gamma=0.5", "t_iters=3", "grid=9"], ["not", "not-weak"])
    assert "gamma" not in routed["not"] and routed["not-weak"]["gamma"] == 0.5
    assert routed["not"]["t_iters"] == routed["not-weak"]["t_iters"] == 3
    assert routed["not"]["grid"] == 9
    with pytest.raises(ConfigError, match="type int"):
        route_overrides(["t_iters=three"], ["not", "not-weak"])
    entries, _, _ = plan(tiny_request("unused", sets=("gamma=0.25",)))
    by_name = {e.name: e for e in entries}
    assert by_name["not-weak"].run.solver_config.gamma == 0.25
    assert not hasattr(by_name["not"].run.solver_config, "gamma")


def test_diverged_solver_is_a_nan_row_not_a_crash(tmp_path, monkeypatch):
    from otzoo.registry import get_solver

    cls = get_solver("not")
    real_step = cls.step

    def step(self, batches):  # `not` diverges at once; `not-weak` (a subclass) trains normally
        return {"loss_t": math.nan} if self.id == "not" else real_step(self, batches)

    monkeypatch.setattr(cls, "step", step)
    res = compare(tiny_request(tmp_path / "x"), log=quiet)
    assert "diverged at step 1" in res.notes["not"]
    assert all(math.isnan(v) for v in res.rows["not"].values())
    assert set(res.rows["not"]) == DETERMINISTIC_KEYS | {"train_seconds"}
    assert math.isfinite(res.rows["not-weak"]["fid"])  # the other solver is still scored
    assert json.loads((tmp_path / "x" / "metrics.json").read_text())["not"]["fid"] is None
    assert "diverged" in (tmp_path / "x" / "report.md").read_text()


def test_threads_apply_to_the_run_and_are_restored(tmp_path):
    import torch

    before = torch.get_num_threads()
    compare(tiny_request(tmp_path / "t", solvers=("not",), threads=before + 1), log=quiet)
    report = (tmp_path / "t" / "report.md").read_text()
    assert f"torch CPU threads: {before + 1}" in report
    assert f"with {before + 1} threads, device cpu" in report  # the machine line, in the run
    assert torch.get_num_threads() == before
    with pytest.raises(ConfigError, match="--threads -1"):
        compare(tiny_request(tmp_path / "z", threads=-1), log=quiet)
    assert not (tmp_path / "z").exists()


def test_sample_rows_are_the_inputs_then_each_solvers_maps_then_real_targets(tmp_path):
    """samples.png: the first row holds n test inputs, each next row one solver's outputs for
    exactly those inputs (in the order the solvers were listed), the last real targets; every
    row is labelled with what it is and, for maps, its target accuracy and color."""
    import torch

    from otzoo.compare_outputs import sample_rows
    from otzoo.data import load_pair
    from otzoo.evaluate import apply_map
    from otzoo.registry import build_solver

    entries, pair, seed = plan(tiny_request(tmp_path / "s", solvers=("not", "pot-linear")))
    data = load_pair(pair, entries[0].run.data, seed=seed)
    for e in entries:
        e.solver = build_solver(e.run, data, torch.device("cpu"))
    with torch.no_grad():  # give the residual map a visible effect
        next(iter(entries[0].solver.T.head.parameters())).add_(0.5)
    entries[1].solver.step(_AllBatches(data))  # fit the discrete baseline
    metrics = {"not": {"target_accuracy": 0.25, "color_preservation": 1.0}}
    rows, labels = sample_rows(entries, data, 4, seed, metrics)
    assert [label.split("\n")[0] for label in labels] == [
        "input (3)",
        "not",
        "pot-linear",
        "real target",
    ]
    assert labels[1] == "not\nacc 0.25  color 1.00"
    x = rows[0]
    assert x.shape == (4, *data.x_shape) and len(rows) == 4
    assert any(torch.equal(x[0], t) for t in data.x_test)  # real test inputs
    for e, row in zip(entries, rows[1:3], strict=True):
        assert torch.allclose(row, apply_map(e.solver, x).clamp(-1, 1))
        assert not torch.equal(row, x)
    assert all(any(torch.equal(r, t) for t in data.y_test) for r in rows[3])


class _AllBatches:
    def __init__(self, data):
        self.x_all, self.y_all, self.batch_size = data.x_train, data.y_train, 8


def test_a_baseline_that_maps_threes_to_fives_beats_the_identity(
    tmp_path, monkeypatch, judge8, judge_cache
):
    """With a judge that discriminates (judge8, reused from its cache through the same key),
    the harness scores a real 3 -> 5 map far above the identity row, and the real target row
    at the judge's own accuracy on fives."""
    from otzoo.judge import JudgeConfig
    from tests.conftest import JUDGE_DATA_SETTINGS, JUDGE_SETTINGS

    monkeypatch.setenv("OTZOO_CACHE", str(judge_cache))
    sets = tuple(f"{k}={v}" for k, v in JUDGE_DATA_SETTINGS.items())
    req = tiny_request(tmp_path / "j", solvers=("pot-sinkhorn",), sets=sets)
    res = compare(dataclasses.replace(req, judge=JudgeConfig(**JUDGE_SETTINGS)), log=quiet)
    assert res.judge.key == judge8.key
    rows = res.rows
    assert rows["identity"]["target_accuracy"] <= 0.1
    assert rows["pot-sinkhorn"]["target_accuracy"] >= 0.6
    assert rows["pot-sinkhorn"]["fid"] < 0.5 * rows["identity"]["fid"]
    assert rows["real target"]["target_accuracy"] >= 0.7


def test_known_map_pairs_report_l2_uvp(tmp_path):
    """`otzoo compare --pair gauss:2`: the L2-UVP column is there for the solver and the
    identity, scored exactly as `bench w2` scores (2**14 fresh samples, one seed)."""
    from otzoo.data import load_pair
    from otzoo.evaluate import known_map_scores

    res = compare(
        tiny_request(tmp_path / "g", solvers=("not",), pair="gauss:2", values={"steps": 2}),
        log=quiet,
    )
    for row in ("not", "identity"):
        assert {"l2_uvp", "cosine", "transport_cost"} <= set(res.rows[row])
    data = load_pair("gauss:2", seed=0)
    ident = known_map_scores(lambda x: x, data)
    assert res.rows["identity"]["l2_uvp"] == pytest.approx(ident["l2_uvp"])
    assert res.rows["identity"]["l2_uvp"] > 100  # gaussian_pair(2, 0): 691%
    header = (tmp_path / "g" / "report.md").read_text().split("| map |")[1].splitlines()[0]
    assert " l2_uvp " in header and " cosine " in header


def test_a_hostile_from_run_is_refused_before_the_judge_trains(tmp_path, monkeypatch):
    import torch

    import otzoo.judge as judge_mod
    from otzoo.errors import CheckpointError

    compare(tiny_request(tmp_path / "a", solvers=("not",)), log=quiet)
    run = tmp_path / "a" / "runs" / "not"

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "otzoo-checkpoint-1", "evil": Evil()}, run / "ckpt" / "step_0000099.pt")
    monkeypatch.setenv("OTZOO_CACHE", str(tmp_path / "fresh-cache"))  # no judge cached
    trainings: list[int] = []
    monkeypatch.setattr(judge_mod, "train_judge", lambda *a, **k: trainings.append(1))
    with pytest.raises(CheckpointError, match="refused to load"):
        compare(tiny_request(tmp_path / "b", solvers=(), from_runs=(run,)), log=quiet)
    assert trainings == [] and not (tmp_path / "b").exists()


def test_the_picture_title_gives_the_steps_of_every_row():
    """Presets differ in steps (not 1,150, otm 2,100 on digit pairs): the title says the range."""
    from otzoo.compare_outputs import picture_title
    from otzoo.config import resolve
    from otzoo.registry import get_solver

    nt, otm = (resolve(get_solver(s), "3-5", "quick") for s in ("not", "otm"))
    assert "| quick, 1150 steps |" in picture_title("3-5", [nt, nt]).replace("  ", " ")
    both = picture_title("3-5", [otm, nt])
    assert "1150-2100 steps" in both and "rotation none, extruded" in both
