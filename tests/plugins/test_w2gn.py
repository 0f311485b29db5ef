"""W2GN: conformance, the closed-form Gaussian map recovered, convexity kept, identity start."""

from __future__ import annotations

import json
import time

import pytest
import torch

from otzoo.config import resolve
from otzoo.data.benchmarks import gaussian_pair
from otzoo.errors import ConfigError
from otzoo.metrics.uvp import evaluate_map
from otzoo.nets.icnn import ConvICNN3D, DenseICNN, potential_gradient
from otzoo.registry import check_fits, get_solver
from otzoo.runs import load_run
from otzoo.solver import PairInfo
from otzoo.testing import check_solver, tiny_problem
from otzoo_plugins.w2gn import W2GN
from tests.conftest import fit, pair_batches, run_cli, tensor_batches

CPU = torch.device("cpu")


def _hidden_path(net) -> list[torch.Tensor]:
    inner = net.convex_layers if hasattr(net, "convex_layers") else net.z_layers
    return [layer.weight for layer in [*inner, net.final_layer]]


def test_w2gn_passes_the_solver_contract():
    check_solver(get_solver("w2gn"))


def test_w2gn_recovers_the_gaussian_map_in_2d():
    pair = gaussian_pair(2, seed=0)
    torch.manual_seed(0)
    solver = W2GN(W2GN.Config(), PairInfo("vector", (2,), (2,)), CPU)
    batches = pair_batches(pair, 128)
    start = time.perf_counter()
    fit(solver, batches, 300)
    seconds = time.perf_counter() - start
    scores = evaluate_map(pair, solver.transport, n=4096)
    print(
        f"w2gn gaussian:2 L2-UVP {scores['l2_uvp']:.3f}% cosine {scores['cosine']:.4f} "
        f"in {seconds:.1f} s"
    )
    assert scores["l2_uvp"] < 1.0
    assert scores["cosine"] > 0.99


@pytest.mark.parametrize(
    ("net", "over", "steps"), [("dense", {"hidden": (64, 64)}, 100), ("conv", {}, 20)]
)
def test_voxel_map_moves_the_source_onto_the_target_intensity(net, over, steps):
    """Both voxel potentials; the dense one (a weight per voxel) needs more steps for a shift
    the conv one shares across the grid."""
    info, x, y = tiny_problem("voxel", n=64)  # x in [-1, -0.5], y in [-0.5, 0]
    settings = {**W2GN.presets["tiny"], "pretrain_steps": 30, "lr": 3e-3, "voxel_net": net, **over}
    torch.manual_seed(0)
    solver = W2GN(W2GN.make_config(settings), info, CPU)
    assert type(solver.D) is (DenseICNN if net == "dense" else ConvICNN3D)
    fit(solver, tensor_batches(x, y, 16), steps)
    gap = float(solver.transport(x).mean() - y.mean())
    assert abs(gap) < 0.3 * float(y.mean() - x.mean())


@pytest.mark.parametrize(
    ("kind", "net"), [("vector", "dense"), ("voxel", "dense"), ("voxel", "conv")]
)
def test_hidden_path_weights_stay_non_negative(kind, net):
    info, x, y = tiny_problem(kind)
    settings = {**W2GN.presets["tiny"], "lr": 0.05, "pretrain_steps": 0, "voxel_net": net}
    config = W2GN.make_config(settings)
    torch.manual_seed(0)
    solver = W2GN(config, info, CPU)
    fit(solver, tensor_batches(x, y, 8), 5)
    for net in (solver.D, solver.D_conj):
        weights = torch.cat([w.flatten() for w in _hidden_path(net)])
        assert bool((weights >= 0).all())
        assert bool((weights == 0).any())  # Adam pushed some below zero: the clamp acted


def test_first_step_pretrains_both_potentials_to_the_identity_once():
    pair = gaussian_pair(2, seed=1)
    config = W2GN.make_config({"pretrain_steps": 300, "pretrain_lr": 3e-3})
    torch.manual_seed(0)
    solver = W2GN(config, PairInfo("vector", (2,), (2,)), CPU)
    for opt in solver.optimizers.values():  # only the pre-training moves the potentials
        for group in opt.param_groups:
            group["lr"] = 0.0
    batches = pair_batches(pair, 128)
    first = fit(solver, batches, 1)
    assert "pretrain_D" in first and "pretrain_D_conj" in first
    x, y = batches.x(512), batches.y(512)
    assert float((potential_gradient(solver.D, x) - x).pow(2).sum(1).mean()) < 1e-2
    assert float((potential_gradient(solver.D_conj, y) - y).pow(2).sum(1).mean()) < 1e-2
    assert "pretrain_D" not in fit(solver, batches, 1)
    clone = W2GN(config, solver.info, CPU)
    clone.load_state_dict(solver.state_dict())
    assert clone.steps_done == 2 and "pretrain_D" not in fit(clone, batches, 1)


def test_cycle_weight_defaults_to_min_dim_50_and_is_checked():
    config = resolve(W2GN, "gauss:4", "tiny").solver_config
    assert W2GN(config, PairInfo("vector", (4,), (4,)), CPU).lam == 4.0
    assert W2GN(config, PairInfo("voxel", (3, 8, 8, 8), (3, 8, 8, 8)), CPU).lam == 50.0
    assert (
        W2GN(W2GN.make_config({"cycle_lambda": 2.5}), PairInfo("vector", (4,), (4,)), CPU).lam
        == 2.5
    )
    with pytest.raises(ConfigError, match="cycle_lambda"):
        W2GN.make_config({"cycle_lambda": -1.0})
    with pytest.raises(ConfigError, match="voxel_net='convex'"):
        W2GN.make_config({"voxel_net": "convex"})
    with pytest.raises(ConfigError, match="init_std"):
        W2GN.make_config({"init_std": 0.0})
    with pytest.raises(ConfigError, match="one shape"):
        check_fits(W2GN, PairInfo("vector", (4,), (3,)))


def test_digit_pairs_quick_take_the_measured_recipe_and_a_dense_voxel_potential():
    quick = resolve(W2GN, "3-5", "quick").solver_config
    assert (quick.pretrain_steps, quick.lr, quick.voxel_net) == (300, 1e-3, "dense")
    assert resolve(W2GN, "noise-5", "quick").solver_config.pretrain_steps == 20
    assert resolve(W2GN, "3-5", "tiny").solver_config.pretrain_steps == 3
    assert resolve(W2GN, "3-5", "quick", {"lr": 3e-4}).solver_config.lr == 3e-4
    solver = W2GN(quick, PairInfo("voxel", (3, 8, 8, 8), (3, 8, 8, 8)), CPU)
    assert type(solver.D) is DenseICNN and solver.D.hidden == (128, 128, 64)


def test_a_voxel_run_saved_before_dense_potentials_still_loads(tmp_path):
    """Runs saved before 2026-12-05 have no `voxel_net` key and ConvICNN3D weights; reading one
    must rebuild the conv potentials (`former_defaults`), not today's dense ones, which its
    checkpoint does not fit."""
    out = tmp_path / "old"
    res = run_cli("train", "--solver", "w2gn", "--pair", "3-5", "--preset", "tiny", "--quiet",
                  "--set", "voxel_net=conv", "--out", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    path = out / "config.json"
    raw = json.loads(path.read_text())
    del raw["solver_config"]["voxel_net"]
    path.write_text(json.dumps(raw))
    run, solver, _ = load_run(out)
    assert run.solver_config.voxel_net == "conv"
    assert isinstance(solver.modules["D"], ConvICNN3D)
    assert W2GN.make_config().voxel_net == "dense"  # new runs keep today's default
