"""ENOT's expectile loss and OT-CFM's minibatch coupling, ODE solvers and diagnostics."""

from __future__ import annotations

import pytest
import torch

from otzoo.registry import get_solver
from otzoo.solver import PairInfo
from otzoo_plugins.enot import expectile_loss
from otzoo_plugins.otcfm import ODE_METHODS, ot_pairs

CPU = torch.device("cpu")


def test_expectile_loss_weights_the_two_sides():
    d = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0])
    got = expectile_loss(d, 0.9)
    want = torch.tensor([0.1 * 4, 0.1 * 0.25, 0.0, 0.9 * 0.25, 0.9 * 4])
    assert torch.allclose(got, want)
    assert torch.allclose(expectile_loss(d, 0.5), 0.5 * d.square())


def test_ot_pairs_are_the_exact_plan_of_the_batch():
    """Equal uniform batches: the exact plan is a permutation, so every source appears once
    and the pairing is the one of least total cost (here: shifted copies map back)."""
    torch.manual_seed(0)
    x0 = torch.randn(16, 3)
    perm = torch.randperm(16)
    x1 = x0[perm] + 0.01
    i, j = ot_pairs(x0, x1)
    assert i.tolist() == list(range(16)) and sorted(j.tolist()) == list(range(16))
    assert torch.equal(perm[j], i)  # x0[i] is paired with its own shifted copy


@pytest.mark.parametrize("method", sorted(ODE_METHODS))
def test_ode_solvers_integrate_a_known_field(method):
    """v(t, x) = c (a constant field): x(1) = x(0) + c for every solver, straightness 0."""
    cls = get_solver("otcfm")
    solver = cls(
        cls.make_config({"ode_method": method, "ode_steps": 3, "hidden": (8,)}),
        PairInfo("vector", (2,), (2,)),
        CPU,
    )
    shift = torch.tensor([1.0, -2.0])
    solver.v = lambda t, x: shift.expand_as(x)
    x = torch.randn(5, 2)
    assert torch.allclose(solver.transport(x), x + shift)
    d = solver.diagnostics(x)
    assert d["nfe"] == 3.0 * ODE_METHODS[method] and d["straightness"] == pytest.approx(
        0.0, abs=1e-10
    )


def test_enot_and_otcfm_report_in_compare_rows(tmp_path):
    from otzoo.compare import CompareRequest, compare

    req = CompareRequest(
        out=tmp_path / "c", solvers=("enot", "otcfm"), pair="gauss:2", preset="tiny",
        values={"steps": 3}, show_progress=False,
    )  # fmt: skip
    rows = compare(req, log=lambda _: None).rows
    assert {"l2_uvp", "cosine"} <= set(rows["enot"])
    assert rows["otcfm"]["nfe"] == 4 * 2 and rows["otcfm"]["straightness"] >= 0
