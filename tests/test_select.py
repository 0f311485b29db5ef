"""Map selection on training data (`select_every`, otzoo.select): the run ends with the best
map it saw, keeps it through checkpoints and resume, and selecting never changes training."""

from __future__ import annotations

import json

import pytest
import torch

from otzoo import registry
from otzoo.config import parse_overrides, resolve
from otzoo.data import load_pair
from otzoo.runs import list_checkpoints, load_checkpoint, load_run
from otzoo.select import MapSelector
from otzoo.train import train

DRIFT_FROM = 8  # the drifting solver learns until this step, then walks away from the target


@pytest.fixture
def drifting(monkeypatch):
    """The template's translation solver (x + b, fitted to the target's mean), which after
    DRIFT_FROM steps pushes b away from the target: its best map is mid-run."""
    from otzoo_plugins._template import TranslationSolver

    class Drifting(TranslationSolver):
        def step(self, batches):
            out = super().step(batches)
            if self.steps_done >= DRIFT_FROM:
                with torch.no_grad():
                    self.shift.add_(0.25)
            return out

    monkeypatch.setitem(registry._SOLVERS, "drifting", Drifting)
    monkeypatch.setattr(Drifting, "id", "drifting")
    return Drifting


def tiny(solver, steps: int, **over):
    items = [f"steps={steps}", "ckpt_every=4", *[f"{k}={v}" for k, v in over.items()]]
    return resolve(solver, "3-5", "tiny", parse_overrides(items, solver), seed=0)


def test_run_ends_with_the_best_map_on_training_data(tmp_path, drifting):
    run = tiny(drifting, 16, select_every=2)
    res = train(run, tmp_path / "sel", show_progress=False)
    metrics = json.loads((tmp_path / "sel" / "metrics.json").read_text())
    picked = int(metrics["selected_step"])
    assert 0 < picked <= DRIFT_FROM  # learned something, and stopped before the drift
    last = load_checkpoint(list_checkpoints(tmp_path / "sel")[-1])
    chosen = last["chosen"]
    assert chosen["step"] == picked
    # the run reports the chosen map; its checkpoint still holds the last state (for resume)
    shift = res.solver.shift.detach()
    assert torch.equal(shift, chosen["modules"]["T"]["shift"])
    assert not torch.equal(shift, last["state"]["modules"]["T"]["shift"])
    _, reloaded, data = load_run(tmp_path / "sel")
    assert torch.equal(reloaded.shift.detach(), shift)  # eval / render / compare --from
    # the chosen map is the better one on the training data, and on the test split too
    selector = MapSelector(data, 256)
    assert selector.score(reloaded) == pytest.approx(chosen["score"])
    plain = train(tiny(drifting, 16), tmp_path / "plain", show_progress=False)
    assert "selected_step" not in plain.metrics
    assert selector.score(plain.solver) > chosen["score"]
    assert metrics["transport_cost"] < plain.metrics["transport_cost"]


def test_selecting_changes_nothing_the_run_trains_and_resumes_exactly(tmp_path):
    nat = registry.get_solver("not-weak")  # stochastic: scoring it draws noise
    train(tiny(nat, 6), tmp_path / "off", show_progress=False)
    train(tiny(nat, 6, select_every=2), tmp_path / "on", show_progress=False)
    train(tiny(nat, 4, select_every=2), tmp_path / "resumed", show_progress=False)
    train(tiny(nat, 6, select_every=2), tmp_path / "resumed", resume=True, show_progress=False)
    off, on, resumed = (
        load_checkpoint(list_checkpoints(tmp_path / name)[-1]) for name in ("off", "on", "resumed")
    )
    for k, t in off["state"]["modules"]["T"].items():
        assert torch.equal(t, on["state"]["modules"]["T"][k]), k  # same training stream
    assert off["chosen"] is None
    assert resumed["chosen"]["step"] == on["chosen"]["step"]
    assert resumed["chosen"]["score"] == on["chosen"]["score"]
    for k, t in on["chosen"]["modules"]["T"].items():
        assert torch.equal(t, resumed["chosen"]["modules"]["T"][k]), k


def test_selector_scores_the_identity_of_matching_sets_lowest():
    data = load_pair(
        "3-5", resolve(registry.get_solver("not"), "3-5", "tiny", {}, seed=0).data, seed=0
    )

    class Fixed:  # a "solver" whose map is a fixed function
        def __init__(self, fn):
            self.fn, self.device, self.modules, self.steps_done = fn, torch.device("cpu"), {}, 0

        def transport(self, x, z=None):
            return self.fn(x)

        def train_mode(self, on=True):
            pass

    selector = MapSelector(data, 64)
    to_target = Fixed(lambda x: data.y_train[: len(x)])  # outputs real target samples
    assert selector.score(to_target) == pytest.approx(0.0, abs=1e-12)
    assert selector.score(Fixed(lambda x: x)) > 0.01  # the sources are not the targets
