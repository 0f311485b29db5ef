"""Amortized-conjugate solver: conformance (every potential / loss / conjugate solver), the
closed-form Gaussian map recovered, identity start, conjugate consistency, lr schedule."""

from __future__ import annotations

import math
import time

import pytest
import torch

from otzoo.config import resolve
from otzoo.data.benchmarks import gaussian_pair
from otzoo.errors import ConfigError
from otzoo.metrics.uvp import evaluate_map
from otzoo.nets import MLP, ResNet3D
from otzoo.nets.icnn import ConvICNN3D, DenseICNN, potential_gradient
from otzoo.registry import check_fits
from otzoo.solver import PairInfo
from otzoo.testing import check_solver, tiny_problem
from otzoo_plugins.amortized import Amortized
from tests.conftest import fit, pair_batches, tensor_batches

CPU = torch.device("cpu")
VEC2 = PairInfo("vector", (2,), (2,))


def _variant(**tiny) -> type[Amortized]:
    """Amortized with its tiny preset changed (check_solver always trains the tiny preset)."""
    presets = {**Amortized.presets, "tiny": {**Amortized.presets["tiny"], **tiny}}
    return type("AmortizedVariant", (Amortized,), {"presets": presets})


def test_amortized_passes_the_solver_contract():
    check_solver(Amortized)


@pytest.mark.parametrize(
    "options",
    [
        {"potential": "icnn", "amortization": "objective", "conj_solver": "adam"},
        {"amortization": "cycle", "conj_solver": "lbfgs_torch"},
        {"amortization": "objective", "conj_max_iter": 0},
    ],
)
def test_every_potential_loss_and_conjugate_solver_passes_the_contract(options):
    check_solver(_variant(**options), kinds=("vector",))


def test_conjugate_map_passes_the_contract():
    """map=conjugate: f fit on the target, the map its conjugate point (solved at transport)."""
    check_solver(_variant(map="conjugate"))


def test_hue_plane_keeps_the_conjugate_search_in_the_inputs_hue_plane():
    """`hue_plane` (with map=conjugate): after training steps each voxel's move T(x) - x lies in
    the plane of gray and x's mean chroma, where the free search's does not; with
    `hue_plane_train=false` only transport keeps to it (f trains as with the free search, to the
    same weights). One-line errors without the conjugate map, on vectors, and for
    `hue_plane_train` without `hue_plane`."""
    from tests.conftest import off_hue_plane, one_colored_blobs

    info, x, y = one_colored_blobs()
    off, weights = {}, {}
    for plane, in_training in ((False, True), (True, True), (True, False)):
        torch.manual_seed(0)
        options = {**Amortized.presets["tiny"], "lr": 1e-2, "map": "conjugate"}
        options.update(hue_plane=plane, hue_plane_train=in_training)
        solver = Amortized(Amortized.make_config(options), info, CPU)
        fit(solver, tensor_batches(x, y, 4), 4)
        moves = (solver.transport(x) - x).detach()
        assert torch.isfinite(moves).all() and moves.abs().max() > 1e-3
        off[plane, in_training] = off_hue_plane(moves, x)
        weights[plane, in_training] = torch.cat([p.flatten() for p in solver.f.parameters()])
        if (plane, in_training) == (True, False):  # training steps search freely
            _, x_hat, _ = solver.conjugate(x)
            assert off_hue_plane(x_hat - x, x) > 1e-3
    assert off[True, True] < 1e-4 < off[False, True], off
    assert off[True, False] < 1e-4, off
    assert torch.equal(weights[True, False], weights[False, True])
    assert not torch.equal(weights[True, True], weights[False, True])
    with pytest.raises(ConfigError, match="map=conjugate"):
        Amortized.make_config({"hue_plane": True})
    with pytest.raises(ConfigError, match="voxel"):
        Amortized(Amortized.make_config({"map": "conjugate", "hue_plane": True}), VEC2, CPU)
    with pytest.raises(ConfigError, match="hue_plane is off"):
        Amortized.make_config({"map": "conjugate", "hue_plane_train": False})


def test_ema_averages_f_and_h_and_transport_uses_the_averages():
    info, x, y = tiny_problem("voxel")
    options = {**Amortized.presets["tiny"], "lr": 1e-2, "map": "conjugate", "ema": 0.9}
    torch.manual_seed(0)
    solver = Amortized(Amortized.make_config(options), info, CPU)
    assert set(solver.modules) == {"f", "H", "f_ema", "H_ema"}
    assert set(solver.optimizers) == {"f", "H"}  # the averages are not trained
    start = [p.detach().clone() for p in solver.f.parameters()]
    batches = tensor_batches(x, y, 8)
    fit(solver, batches, 1)
    averaged = zip(solver.f_eval.parameters(), solver.f.parameters(), start, strict=True)
    for avg, live, old in averaged:
        assert torch.allclose(avg, 0.9 * old + 0.1 * live, atol=1e-6)
    fit(solver, batches, 3)
    live_map = solver.conjugate(x)[1]
    assert float((solver.transport(x) - live_map).abs().max()) > 1e-4  # the averaged f and H


def test_icnn_voxel_variant_passes_the_contract():
    check_solver(_variant(potential="icnn", amortization="cycle"), kinds=("voxel",))


@pytest.mark.parametrize(("potential", "net"), [("mlp", MLP), ("icnn", DenseICNN)])
def test_dense_voxel_potentials_pass_the_contract(potential, net):
    """`voxel_net=dense`: the potential sees the flat grid (a weight per voxel)."""
    check_solver(_variant(potential=potential, voxel_net="dense"), kinds=("voxel",))
    info = tiny_problem("voxel")[0]
    config = Amortized.make_config({"potential": potential, "voxel_net": "dense"})
    f = Amortized(config, info, CPU).f
    assert any(isinstance(m, net) for m in f.modules())
    assert not any(isinstance(m, (ResNet3D, ConvICNN3D)) for m in f.modules())


@pytest.mark.parametrize("map_kind", ["gradient", "conjugate"])
def test_amortized_recovers_the_gaussian_map_in_2d(map_kind):
    pair = gaussian_pair(2, seed=0)
    steps = 300
    torch.manual_seed(0)
    solver = Amortized(Amortized.make_config({"map": map_kind}), VEC2, CPU)
    batches = pair_batches(pair, 256)
    start = time.perf_counter()
    fit(solver, batches, steps, lr_decay_steps=steps)
    seconds = time.perf_counter() - start
    scores = evaluate_map(pair, solver.transport, n=4096)
    print(
        f"amortized map={map_kind} gaussian:2 L2-UVP {scores['l2_uvp']:.3f}% "
        f"cosine {scores['cosine']:.4f} in {seconds:.1f} s"
    )
    assert scores["l2_uvp"] < 1.0
    assert scores["cosine"] > 0.99
    # The conjugate inverts grad f (grad f(x_hat(p)) = p), and H has learned to predict x_hat
    # (regression amortization): its error is a small part of the displacement. The conjugate
    # runs on the side f is not fit on: the target's samples, or with map=conjugate the source's.
    points = batches.x(256) if map_kind == "conjugate" else batches.y(256)
    x_pred, x_hat = (t.detach() for t in solver.conjugate(points)[:2])
    assert float((potential_gradient(solver.f, x_hat) - points).norm(dim=1).max()) < 5e-3
    amortization_error = float((x_pred - x_hat).norm(dim=1).mean())
    assert amortization_error < 0.05 * float((points - x_hat).norm(dim=1).mean())
    # transport and inverse undo each other, whichever of the two is the conjugate solve
    x = batches.x(256)
    assert float((solver.inverse(solver.transport(x)) - x).norm(dim=1).max()) < 5e-3


@pytest.mark.parametrize("kind", ["vector", "voxel"])
def test_mlp_potential_and_amortizer_start_at_the_identity(kind):
    info, x, y = tiny_problem(kind)
    torch.manual_seed(0)
    solver = Amortized(resolve(Amortized, "3-5", "tiny").solver_config, info, CPU)
    assert torch.allclose(solver.transport(x), x, atol=1e-6)
    assert torch.allclose(solver.H(y), y, atol=1e-6)
    _, x_hat, stats = solver.conjugate(y)
    assert stats["conj_iters"] == 0.0 and torch.allclose(x_hat, y, atol=1e-6)


def test_voxel_map_moves_towards_the_target_on_the_per_voxel_scale():
    """f sums over voxels, so grad f moves each voxel by O(1), not O(1 / voxel count)."""
    info, x, y = tiny_problem("voxel", n=64)  # x in [-1, -0.5], y in [-0.5, 0]
    torch.manual_seed(0)
    solver = Amortized(Amortized.make_config({**Amortized.presets["tiny"], "lr": 1e-2}), info, CPU)
    fit(solver, tensor_batches(x, y, 16), 20)
    moved = float(solver.transport(x).mean() - x.mean())
    assert 0.25 * float(y.mean() - x.mean()) < moved < 1.5 * float(y.mean() - x.mean())


@pytest.mark.parametrize("norm", ["group", "none"])
def test_f_norm_sets_the_voxel_potentials_normalisation(norm):
    """`f_norm` reaches f's ResNet3D: GroupNorm layers with `group`, none with `none`."""
    info = tiny_problem("voxel", n=4)[0]
    solver = Amortized(
        Amortized.make_config({**Amortized.presets["tiny"], "f_norm": norm}), info, CPU
    )
    groups = sum(isinstance(m, torch.nn.GroupNorm) for m in solver.f.modules())
    assert (groups > 0) == (norm == "group")


def test_conjugate_tolerance_is_per_element_rms():
    pair = gaussian_pair(3, seed=2)
    config = Amortized.make_config({"conj_gtol": 1e-4, "conj_max_iter": 200})
    solver = Amortized(config, PairInfo("vector", (3,), (3,)), CPU)
    batches = pair_batches(pair, 64)
    stats = fit(solver, batches, 5)
    assert stats["conj_grad_rms"] <= 1e-4
    y = batches.y(32)
    residual = solver.transport(solver.inverse(y)) - y
    assert float(residual.norm(dim=1).max()) / math.sqrt(3) <= 1.5e-4


def test_bad_options_raise_config_errors():
    with pytest.raises(ConfigError, match="potential"):
        Amortized.make_config({"potential": "resnet"})
    with pytest.raises(ConfigError, match="voxel_net='flat'"):
        Amortized.make_config({"voxel_net": "flat"})
    with pytest.raises(ConfigError, match="f_norm"):
        Amortized.make_config({"f_norm": "batch"})
    with pytest.raises(ConfigError, match="conj_solver"):
        Amortized.make_config({"conj_solver": "newton"})
    with pytest.raises(ConfigError, match="regression needs conj_max_iter"):
        Amortized.make_config({"conj_max_iter": 0})
    with pytest.raises(ConfigError, match="one shape"):
        check_fits(Amortized, PairInfo("vector", (4,), (3,)))
