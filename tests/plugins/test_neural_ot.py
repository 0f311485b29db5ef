"""NOT: the gamma-weak term really runs (its arithmetic, its ramp through the trainer, a
stochastic map), the EMA map (update arithmetic, use for transport, exact resume), and the
R1 / R2 gradient penalties (each flattens the potential where it is taken)."""

from __future__ import annotations

import copy

import pytest
import torch

from otzoo.config import resolve
from otzoo.errors import ConfigError
from otzoo.evaluate import evaluate
from otzoo.nets.common import ema_update
from otzoo.registry import get_solver
from otzoo.runs import list_checkpoints, load_checkpoint
from otzoo.solver import PairInfo
from otzoo.train import train
from otzoo_plugins.saddle import squared_slope
from tests.conftest import Batches, fit, tensor_batches

WEAK = get_solver("not-weak")
NOT = get_solver("not")
VEC2 = PairInfo(kind="vector", x_shape=(2,), y_shape=(2,))


def gaussians(batch_size: int = 32) -> Batches:
    return Batches(
        lambda n, g: torch.randn(n, 2, generator=g),
        lambda n, g: 0.5 * torch.randn(n, 2, generator=g) + 2.0,
        batch_size,
    )


def test_weak_term_is_gamma_times_the_variance():
    """For the same T, f and noise, the T loss at gamma g is the strong one minus g x Var."""
    torch.manual_seed(0)
    solver = WEAK(
        WEAK.make_config({"gamma": 0.5, "gamma_ramp_steps": 10, "z_size": 4}),
        VEC2,
        torch.device("cpu"),
    )
    with torch.no_grad():  # a map that uses its noise, so the variance is not zero
        for p in solver.T.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(16, 2)
    values = {}
    for steps_done in (0, 5, 10, 20):  # gamma 0, 0.25, 0.5 (ramp end), 0.5
        solver.steps_done = steps_done
        torch.manual_seed(1)
        loss, logs = solver.map_loss(x)
        logs = {k: float(v.detach()) for k, v in logs.items()}
        values[steps_done] = (float(loss.detach()), logs["variance"], logs["gamma"])
    strong, var, gamma0 = values[0]
    assert gamma0 == 0.0 and var > 1e-3
    for steps_done, gamma in ((5, 0.25), (10, 0.5), (20, 0.5)):
        loss, var_again, logged = values[steps_done]
        assert logged == pytest.approx(gamma) and var_again == pytest.approx(var)
        assert loss == pytest.approx(strong - gamma * var, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("cls", [NOT, WEAK])
def test_cost_weight_scales_the_cost_the_map_pays(cls):
    """For the same T, f, batch and noise, the map's loss at cost_weight w is w x (its cost
    terms) minus the same f term: w = 3 adds exactly 2 x the loss at w = 1 minus that at w = 0
    (read from two weights, as the f term cancels). Zero and negative weights are refused."""
    x = torch.randn(16, 2)

    def loss_at(weight: float) -> float:
        torch.manual_seed(0)
        solver = cls(
            cls.make_config({"cost_weight": weight, "z_size": 4}), VEC2, torch.device("cpu")
        )
        with torch.no_grad():
            for p in solver.T.parameters():
                p.add_(0.3 * torch.randn_like(p))
        torch.manual_seed(1)
        return float(solver.map_loss(x)[0].detach())

    one, two, three = loss_at(1.0), loss_at(2.0), loss_at(3.0)
    assert two - one > 1e-3  # the cost terms are positive for a map that moves
    assert three - two == pytest.approx(two - one, rel=1e-4)
    for bad in (0.0, -1.0):
        with pytest.raises(ConfigError, match="cost_weight"):
            cls.make_config({"cost_weight": bad})


def test_gamma_ramps_as_the_trainer_advances_and_the_map_turns_stochastic(tmp_path):
    """Trained through `otzoo.train` (which owns steps_done): gamma reaches its final value, and
    the map, which ignores its noise at init (zero head: diversity exactly 0), uses it."""
    run = resolve(WEAK, "3-5", "tiny", {"steps": 6, "gamma_ramp_steps": 4, "gamma": 0.66})
    result = train(run, tmp_path / "run", show_progress=False)
    solver = result.solver
    assert solver.steps_done == 6 and solver.gamma == pytest.approx(0.66)
    from otzoo.data import load_pair

    data = load_pair("3-5", run.data, seed=0)
    untrained = WEAK(run.solver_config, solver.info, torch.device("cpu"))
    untrained.train_mode(False)
    kw = {"stochastic": True, "max_samples": 8, "diversity_inputs": 4}
    assert evaluate(untrained.transport, data, **kw)["diversity"] == 0.0
    solver.train_mode(False)
    assert evaluate(solver.transport, data, **kw)["diversity"] > 0.0


def test_ema_update_arithmetic():
    torch.manual_seed(0)
    live = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    avg = copy.deepcopy(live)
    with torch.no_grad():
        for p in live.parameters():
            p.add_(1.0)
        live[1].running_mean.fill_(7.0)
    before = [p.clone() for p in avg.parameters()]
    ema_update(avg, live, 0.9)
    for a, b, old in zip(avg.parameters(), live.parameters(), before, strict=True):
        assert torch.allclose(a, 0.9 * old + 0.1 * b)
    assert torch.equal(avg[1].running_mean, live[1].running_mean)  # buffers are copied


def test_ema_map_is_updated_every_map_step_and_used_for_transport():
    torch.manual_seed(0)
    config = NOT.make_config({"ema": 0.5, "t_iters": 2, "hidden": (16,), "lr_t": 1e-2})
    solver = NOT(config, VEC2, torch.device("cpu"))
    start = copy.deepcopy(solver.T_eval.state_dict())
    fit(solver, gaussians(), 1)
    live = solver.T.state_dict()
    ema = solver.T_eval.state_dict()
    assert solver.T_eval is not solver.T
    assert any(not torch.equal(ema[k], start[k]) for k in ema)  # the EMA moved ...
    assert any(not torch.equal(ema[k], live[k]) for k in ema)  # ... but lags the live map
    x = torch.randn(5, 2)
    with torch.no_grad():
        assert torch.equal(solver.transport(x), solver.T_eval(x))


def test_resume_with_ema_is_bit_identical(tmp_path):
    def run(steps: int):
        return resolve(NOT, "3-5", "tiny", {"steps": steps, "ema": 0.9, "ckpt_every": 2})

    a, b = tmp_path / "a", tmp_path / "b"
    train(run(2), a, show_progress=False)
    train(run(4), a, resume=True, show_progress=False)
    train(run(4), b, show_progress=False)
    sa = load_checkpoint(list_checkpoints(a)[-1])["state"]["modules"]
    sb = load_checkpoint(list_checkpoints(b)[-1])["state"]["modules"]
    assert set(sa) == {"T", "f", "T_ema"}
    for net in sa:
        assert all(torch.equal(sa[net][k], sb[net][k]) for k in sa[net]), net
    assert any(not torch.equal(sa["T_ema"][k], sa["T"][k]) for k in sa["T"])
    at2 = load_checkpoint(list_checkpoints(b)[0])  # the EMA moved between steps 2 and 4
    assert at2["step"] == 2
    assert any(
        not torch.equal(at2["state"]["modules"]["T_ema"][k], sb["T_ema"][k]) for k in sb["T_ema"]
    )


@pytest.mark.parametrize("key", ["r1", "r2"])
def test_gradient_penalty_flattens_the_potential_where_it_is_taken(key):
    """r1 penalises the potential's slope at real targets, r2 at the map's outputs: trained with
    the weight, the slope there ends well below that of the same run without it."""

    def slope(weight: float) -> tuple[float, dict[str, float]]:
        torch.manual_seed(0)
        config = NOT.make_config({key: weight, "hidden": (32, 32), "lr_t": 1e-2, "lr_f": 1e-2})
        solver = NOT(config, VEC2, torch.device("cpu"))
        logs = fit(solver, gaussians(), 60)
        g = torch.Generator().manual_seed(5)
        points = 0.5 * torch.randn(256, 2, generator=g) + 2.0  # real targets
        if key == "r2":
            with torch.no_grad():
                points = solver.T(torch.randn(256, 2, generator=g))
        points = points.detach().requires_grad_(True)  # the penalty the step takes, re-read
        return float(squared_slope(solver.potential(points), points).detach()), logs

    free, free_logs = slope(0.0)
    held, held_logs = slope(30.0)
    assert key not in free_logs and held_logs[key] >= 0.0
    assert held < 0.01 * free, (held, free)  # taken at the other points: 0.05-0.18 x


@pytest.mark.parametrize(("solver_id", "key"), [("not", "f_norm"), ("otm", "psi_norm")])
def test_potential_norm_switch_reaches_the_voxel_potential(solver_id, key):
    """`f_norm` / `psi_norm` = none builds the voxel potential without GroupNorm (the recipe
    whose maps keep their color purity, docs/results.md, "The haze, diagnosed"); group keeps it."""
    cls = get_solver(solver_id)
    info = PairInfo(kind="voxel", x_shape=(3, 8, 8, 8), y_shape=(3, 8, 8, 8))

    def norms(value: str) -> int:
        solver = cls(cls.make_config({key: value}), info, torch.device("cpu"))
        net = solver.potential
        return sum(isinstance(m, torch.nn.GroupNorm) for m in net.modules())

    assert norms("group") > 0 and norms("none") == 0


def test_context_switches_reach_both_voxel_nets_and_not_quick_uses_them():
    """`t_context` / `f_context` give T and f FiLMs that read the input's channel means (3 for
    rgby voxels); off, neither has any. `not`'s quick preset turns both on, `not-weak`'s on
    digit pairs only."""
    info = PairInfo(kind="voxel", x_shape=(3, 8, 8, 8), y_shape=(3, 8, 8, 8))

    def films(config: dict) -> tuple[int, int]:
        solver = NOT(NOT.make_config(config), info, torch.device("cpu"))
        return len(solver.T.films), len(solver.potential.films)

    assert films({}) == (0, 0)
    t_films, f_films = films({"t_context": True, "f_context": True})
    assert t_films > 0 and f_films > 0
    solver = NOT(NOT.make_config({"t_context": True}), info, torch.device("cpu"))
    assert {film.in_features for film in solver.T.films} == {3}
    quick = resolve(NOT, "3-5", "quick").solver_config
    assert quick.t_context and quick.f_context and quick.t_hue_plane
    weak = resolve(WEAK, "3-5", "quick").solver_config
    assert weak.t_context and weak.f_context and weak.t_hue_plane
    assert not resolve(WEAK, "noisy-clean", "quick").solver_config.t_context
    # a noisy source's mean is not a digit's hue, and a gray source has none to keep
    for pair in ("noise-5:16", "noisy-clean", "gray-color"):
        assert not resolve(NOT, pair, "quick").solver_config.t_hue_plane


@pytest.mark.parametrize("solver_id", ["not", "otm"])
def test_two_colored_negatives_teach_the_potential_that_a_digit_has_one_color(solver_id):
    """neg_color: the potential ranks real fives above copies with a random half recolored by
    (up to) the margin it puts between real fives and the map's outputs. After 40 steps on 8^3
    digits, in the potential's own sign (f high / psi low on real targets), the two-colored
    copies' gap is most of the map's with it and a small part without it. Vector pairs refuse
    the option."""
    from otzoo.data import DataConfig, load_pair
    from otzoo.data.transforms import color_mixed

    cls = get_solver(solver_id)
    data = load_pair("3-5", DataConfig(grid=8, max_per_digit=40), seed=0)
    info = PairInfo(kind="voxel", x_shape=(3, 8, 8, 8), y_shape=(3, 8, 8, 8))
    real, sources = data.y_test[:64], data.x_test[:64]

    def gaps(weight: float) -> tuple[float, float, dict[str, float]]:
        torch.manual_seed(0)
        lrs = {k: 1e-3 for k in ("lr_t", "lr_f", "lr_psi") if k in cls.Config.__dataclass_fields__}
        settings = {**cls.presets["tiny"], **lrs, "neg_color": weight, "t_iters": 1}
        solver = cls(cls.make_config(settings), info, torch.device("cpu"))
        logs = fit(solver, tensor_batches(data.x_train, data.y_train, 16), 40)
        torch.manual_seed(1)
        with torch.no_grad():
            pot, s = solver.potential, solver.real_sign
            two_colored = float(s * (pot(real) - pot(color_mixed(real))).mean())
            mapped = float(s * (pot(real) - pot(solver.T(sources))).mean())
        return two_colored, mapped, logs

    free, free_mapped, free_logs = gaps(0.0)
    taught, taught_mapped, taught_logs = gaps(1.0)
    assert "neg_gap" not in free_logs and "neg_gap" in taught_logs
    assert free_mapped > 0 and taught_mapped > 0
    # measured (not / otm): 0.85 / 0.59 of the map's gap with it, 0.09 / 0.10 without
    assert taught > 0.4 * taught_mapped and free < 0.25 * free_mapped, (taught, free)
    assert taught > 3 * abs(free), (taught, free)
    with pytest.raises(ConfigError, match="neg_color"):
        cls(cls.make_config({"neg_color": 1.0}), VEC2, torch.device("cpu"))


class _Mean(torch.nn.Module):
    """A potential whose value is the sample's mean: gaps are known in closed form."""

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return v.flatten(1).mean(dim=1)


@pytest.mark.parametrize("solver_id", ["not", "otm"])
def test_negatives_hinge_is_the_shortfall_below_the_maps_margin(solver_id):
    """The hinge behind neg_color and neg_source, in the potential's own sign: real targets at
    1 and the map's outputs at 0 give a margin of 1; negatives at 0.5 fall 0.5 short of it,
    negatives ranked lower than the outputs fall short by nothing."""
    cls = get_solver(solver_id)
    solver = cls(cls.make_config(cls.presets["tiny"]), VEC2, torch.device("cpu"))
    solver.potential = _Mean()
    s = solver.real_sign
    y, tx = torch.full((4, 2), s * 1.0), torch.zeros(4, 2)
    for level, shortfall in ((0.5, 0.5), (-2.0, 0.0), (1.0, 1.0)):
        negatives = torch.full((4, 2), s * level)
        got, gap = solver.negatives_shortfall(solver.potential(tx), solver.potential(y), negatives)
        assert float(got) == pytest.approx(shortfall) and float(gap) == pytest.approx(1 - level)


@pytest.mark.parametrize("r1", [0.0, 300.0])
@pytest.mark.parametrize("solver_id", ["not", "otm"])
def test_a_potential_step_evaluates_the_potential_once_per_batch(solver_id, r1):
    """With both kinds of negatives on, one outer step (one map step) runs the potential on
    T(x) for the map's loss, then once each on T(x), the targets and the two negative batches:
    the potential loss, the negatives' hinge and R1 share the values at T(x) and the targets."""
    cls = get_solver(solver_id)
    data = {"kind": "voxel", "x_shape": (3, 4, 4, 4), "y_shape": (3, 4, 4, 4)}
    settings = {**cls.presets["tiny"], "t_iters": 1, "neg_source": 1.0, "neg_color": 1.0, "r1": r1}
    solver = cls(cls.make_config(settings), PairInfo(**data), torch.device("cpu"))
    calls = []
    solver.potential.register_forward_hook(lambda module, args, out: calls.append(len(out)))
    x = torch.rand(6, 3, 4, 4, 4) * 2 - 1
    fit(solver, tensor_batches(x, x.flip(0), 6), 1)
    assert calls == [6] * 5
    assert solver.config.r1 == r1  # R1 differentiates the targets' values, with no pass of its own


def test_source_negatives_teach_the_potential_that_a_source_is_not_a_target():
    """neg_source reaches the potential step: it logs its gap, and with a large weight the
    potential ranks real threes below real fives by at least most of the margin it gives the
    map's outputs (40 steps on 8^3 digits; a hinge of the wrong sign would push the threes up).
    On aligned 8^3 digits f learns that ranking without it too, so this checks the wiring, and
    the hinge test above its arithmetic. A latent source (another shape) refuses the option."""
    from otzoo.data import DataConfig, load_pair

    data = load_pair("3-5", DataConfig(grid=8, max_per_digit=40), seed=0)
    info = PairInfo(kind="voxel", x_shape=(3, 8, 8, 8), y_shape=(3, 8, 8, 8))
    real, sources = data.y_test[:64], data.x_test[:64]

    def gaps(weight: float) -> tuple[float, float, dict[str, float]]:
        torch.manual_seed(0)
        settings = {**NOT.presets["tiny"], "lr_t": 1e-3, "lr_f": 1e-3, "neg_source": weight}
        solver = NOT(NOT.make_config({**settings, "t_iters": 1}), info, torch.device("cpu"))
        logs = fit(solver, tensor_batches(data.x_train, data.y_train, 16), 40)
        with torch.no_grad():
            f = solver.potential
            return (
                float((f(real) - f(sources)).mean()),
                float((f(real) - f(solver.T(sources))).mean()),
                logs,
            )

    free, free_mapped, free_logs = gaps(0.0)
    taught, taught_mapped, taught_logs = gaps(10.0)
    assert "neg_source_gap" not in free_logs and "neg_source_gap" in taught_logs
    assert free_mapped > 0 and taught_mapped > 0, (free_mapped, taught_mapped)
    assert taught > 0.5 * taught_mapped, (taught, taught_mapped, free)
    latent = PairInfo(kind="voxel", x_shape=(3, 4, 4, 4), y_shape=(3, 8, 8, 8))
    otm = get_solver("otm")
    with pytest.raises(ConfigError, match="neg_source"):
        otm(otm.make_config({"neg_source": 1.0}), latent, torch.device("cpu"))


@pytest.mark.parametrize("solver_id", ["not", "not-weak", "otm"])
def test_hue_plane_reaches_the_map_and_otm_refuses_a_latent_source(solver_id):
    """`t_hue_plane` builds T with the two-number head on voxels; on vectors it does nothing
    (as `t_context`, so `not`'s quick preset serves vector pairs too); otm on a noise pair
    refuses it (a latent source has no hue) with a ConfigError."""
    cls = get_solver(solver_id)
    info = PairInfo(kind="voxel", x_shape=(3, 8, 8, 8), y_shape=(3, 8, 8, 8))
    solver = cls(cls.make_config({"t_hue_plane": True}), info, torch.device("cpu"))
    assert solver.T.hue_plane and solver.T.head.out_channels == 2
    vector = cls(cls.make_config({"t_hue_plane": True}), VEC2, torch.device("cpu"))
    assert vector.transport(torch.zeros(3, 2)).shape == (3, 2)
    if solver_id == "otm":
        noise = PairInfo(kind="voxel", x_shape=(3, 2, 2, 2), y_shape=(3, 8, 8, 8))
        with pytest.raises(ConfigError, match="latent source"):
            cls(cls.make_config({"t_hue_plane": True}), noise, torch.device("cpu"))
