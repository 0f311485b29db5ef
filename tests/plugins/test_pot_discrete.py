"""POT baselines: contract, known maps (translations, POT's own Bures map), size refusals,
checkpoints that load with weights_only."""

from __future__ import annotations

import io

import ot
import pytest
import torch

from otzoo.errors import ConfigError
from otzoo.registry import check_fits, get_solver
from otzoo.solver import PairInfo
from otzoo.testing import check_solver

IDS = ("pot", "pot-sinkhorn", "pot-linear")
SHIFT = torch.tensor([3.0, -1.0])


class Fixed:
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x_all, self.y_all, self.batch_size = x, y, 8

    def x(self, n: int | None = None) -> torch.Tensor:
        return self.x_all[: n or self.batch_size]

    def y(self, n: int | None = None) -> torch.Tensor:
        return self.y_all[: n or self.batch_size]


def _solver(solver_id: str, dim: int = 2, **overrides):
    cls = get_solver(solver_id)
    info = PairInfo(kind="vector", x_shape=(dim,), y_shape=(dim,))
    return cls(cls.make_config(overrides), info, torch.device("cpu"))


def _translation(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """y is a shuffled, shifted copy of x: the OT map is x -> x + SHIFT."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    return x, x[torch.randperm(n, generator=g)] + SHIFT


@pytest.mark.parametrize("solver_id", IDS)
def test_contract(solver_id):
    check_solver(get_solver(solver_id))


@pytest.mark.parametrize("solver_id", IDS)
def test_identity_before_fit_and_steps_after_fit_are_noops(solver_id):
    x, y = _translation()
    solver = _solver(solver_id)
    assert torch.equal(solver.transport(x), x)
    first = solver.step(Fixed(x, y))
    mapped = solver.transport(x)
    assert solver.step(Fixed(x * 0, y * 0)) == first  # no refit on later steps
    assert torch.equal(solver.transport(x), mapped)


def test_exact_ot_recovers_a_translation_in_and_out_of_sample():
    x, y = _translation()
    solver = _solver("pot")
    losses = solver.step(Fixed(x, y))
    assert losses["plan_cost"] == pytest.approx(float(SHIFT.square().sum()) / 2, rel=1e-5)
    assert torch.allclose(solver.transport(x), x + SHIFT, atol=1e-5)
    near = x[:5] + 1e-3  # nearest training source, then its displacement
    assert torch.allclose(solver.transport(near), near + SHIFT, atol=1e-5)


# At epsilon 0.005 Sinkhorn's marginal error falls like 1/iterations (1e-4 after 5000): POT warns,
# yet the plan is close enough for the map check below.
@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
def test_sinkhorn_is_the_barycentric_projection_in_sample():
    x, y = _translation()
    solver = _solver("pot-sinkhorn", epsilon=0.05)
    losses = solver.step(Fixed(x, y))
    assert losses["marginal_error"] < 1e-4
    xs, ys = x.double(), y.double()
    cost = ot.dist(xs, ys)
    a = torch.full((40,), 1 / 40, dtype=torch.float64)
    plan = ot.sinkhorn(a, a, cost / cost.mean(), 0.05, method="sinkhorn_log", stopThr=1e-9)
    assert torch.allclose(solver.transport(x).double(), 40 * plan @ ys, atol=1e-4)
    sharp = _solver("pot-sinkhorn", epsilon=0.005)  # near the exact map
    assert sharp.step(Fixed(x, y))["plan_cost"] == pytest.approx(5.0, rel=0.01)
    error = (sharp.transport(x) - x - SHIFT).norm(dim=1)
    assert error.mean() < 0.05 and error.max() < 0.15


def test_linear_matches_pots_empirical_bures_map():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 3, generator=g, dtype=torch.float64) @ torch.tensor(
        [[1.0, 0.3, 0.0], [0.0, 0.5, 0.2], [0.0, 0.0, 2.0]], dtype=torch.float64
    )
    y = torch.randn(400, 3, generator=g, dtype=torch.float64) * torch.tensor([0.5, 2.0, 1.0]) + 4
    solver = _solver("pot-linear", dim=3, bures_reg=0.0)
    solver.step(Fixed(x.float(), y.float()))
    a, b = ot.gaussian.empirical_bures_wasserstein_mapping(x, y, reg=0.0)
    probe = x[:50]
    expected = probe @ a + b
    assert torch.allclose(solver.transport(probe.float()).double(), expected, atol=1e-4)


def test_linear_low_rank_is_identity_off_the_sampled_subspace():
    g = torch.Generator().manual_seed(2)
    x = torch.zeros(30, 16)
    x[:, :4] = torch.randn(30, 4, generator=g)  # samples span the first 4 coordinates only
    y = torch.zeros(30, 16)
    y[:, :4] = 2 * torch.randn(30, 4, generator=g) + 1
    solver = _solver("pot-linear", dim=16, max_rank=8)
    losses = solver.step(Fixed(x, y))
    assert "rank" not in losses and solver.counts["rank"] <= 8
    state = solver.fit_state
    off = torch.zeros(1, 16)
    off[0, 10] = 1.0  # orthogonal to every sample: moves only by the mean shift
    shift = state["mean_y"] - state["mean_x"]
    assert torch.allclose(solver.transport(state["mean_x"] + off), state["mean_x"] + off + shift)


def test_refuses_problems_too_large_with_a_way_out():
    x, y = _translation()
    with pytest.raises(ConfigError) as err:
        _solver("pot", max_seconds=1e-9).step(Fixed(x, y))
    assert "pot-sinkhorn" in str(err.value) and "max_per_digit" in str(err.value)
    for solver_id in IDS:
        with pytest.raises(ConfigError, match="GiB") as err:
            _solver(solver_id, max_gib=1e-9).step(Fixed(x, y))
        assert "\n" not in str(err.value) and "max_per_digit" in str(err.value)


def test_unequal_shapes_are_refused():
    info = PairInfo(kind="voxel", x_shape=(3, 4, 4, 4), y_shape=(3, 8, 8, 8))
    with pytest.raises(ConfigError, match="otm"):
        check_fits(get_solver("pot"), info)


@pytest.mark.parametrize("solver_id", IDS)
def test_checkpoint_loads_with_weights_only(solver_id):
    x, y = _translation()
    solver = _solver(solver_id)
    solver.step(Fixed(x, y))
    buffer = io.BytesIO()
    torch.save(solver.state_dict(), buffer)
    buffer.seek(0)
    clone = _solver(solver_id)
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    probe = torch.randn(7, 2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(clone.transport(probe), solver.transport(probe))
    assert clone.step(Fixed(x, y)) == solver.step(Fixed(x, y))


def test_max_samples_fits_a_seeded_subset():
    x, y = _translation()
    fits = []
    for _ in range(2):
        solver = _solver("pot", max_samples=10)
        assert "samples" not in solver.step(Fixed(x, y)) and solver.counts["samples"] == 10.0
        fits.append(solver.fit_state["x_train"])
    assert fits[0].shape == (10, 2) and torch.equal(fits[0], fits[1])
    assert _rows_in(fits[0], x)


def _rows_in(rows: torch.Tensor, table: torch.Tensor) -> bool:
    return bool((rows[:, None] == table[None]).all(dim=2).any(dim=1).all())
