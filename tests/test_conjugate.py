"""Batched conjugate solvers: known answers on quadratics, tolerance and max_iter respected,
per-sample independence, and identity pre-training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from otzoo.conjugate import CONJUGATE_SOLVERS, fit_identity, solve_conjugate
from otzoo.errors import ConfigError
from otzoo.nets.icnn import DenseICNN, potential_gradient


class Quadratic(nn.Module):
    """f(x) = 0.5 x^T A x + b^T x with SPD A: x_hat(y) = A^-1 (y - b)."""

    def __init__(self, dim: int, seed: int = 0, cond: float = 8.0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
        eig = torch.linspace(0.5, 0.5 * cond, dim, dtype=torch.float64)
        self.A = nn.Parameter(((q * eig) @ q.T).float())
        self.b = nn.Parameter(torch.randn(dim, generator=gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return 0.5 * ((x @ self.A) * x).sum(dim=1) + x @ self.b

    def argmin(self, y: torch.Tensor) -> torch.Tensor:
        a, b = self.A.detach().double(), self.b.detach().double()
        sol = torch.linalg.solve(a, (y.flatten(1).double() - b).T).T
        return sol.float().view_as(y)


# torch.optim.LBFGS runs on the batch sum in float32, whose rounding stops it near 1e-4.
@pytest.mark.parametrize(
    ("method", "gtol"), [("lbfgs", 1e-4), ("adam", 1e-4), ("lbfgs_torch", 1e-3)]
)
def test_quadratic_conjugate_point_to_tolerance(method, gtol):
    f = Quadratic(5)
    y = torch.randn(32, 5, generator=torch.Generator().manual_seed(1)) * 2
    res = solve_conjugate(f, y, method=method, max_iter=2000, gtol=gtol)
    assert res.converged and res.x.shape == y.shape
    assert float(res.grad_norm.max()) <= gtol
    # ||x - x*|| <= ||g|| / lambda_min(A) = 2 ||g||, plus float32 rounding
    assert float((res.x - f.argmin(y)).norm(dim=1).max()) <= 2 * gtol + 1e-5
    assert not res.x.requires_grad
    assert f.A.grad is None and f.A.requires_grad  # no gradient leaked, flags restored


def test_lbfgs_needs_far_fewer_iterations_than_adam():
    f = Quadratic(8, seed=2)
    y = torch.randn(16, 8, generator=torch.Generator().manual_seed(3))
    lb = solve_conjugate(f, y, method="lbfgs", max_iter=500, gtol=1e-4)
    ad = solve_conjugate(f, y, method="adam", max_iter=500, gtol=1e-4)
    assert lb.converged and ad.converged
    assert lb.iterations <= 30 < ad.iterations
    assert lb.evaluations < ad.evaluations


@pytest.mark.parametrize("method", CONJUGATE_SOLVERS)
def test_max_iter_is_respected(method):
    f = Quadratic(6, cond=50.0)
    y = torch.randn(8, 6, generator=torch.Generator().manual_seed(4)) * 5
    res = solve_conjugate(f, y, method=method, max_iter=2, gtol=1e-8)
    assert res.iterations == 2 and not res.converged
    assert float(res.grad_norm.min()) > 1e-8


def test_zero_iterations_and_already_solved_start_return_the_start():
    f = Quadratic(3)
    y = torch.randn(4, 3, generator=torch.Generator().manual_seed(5))
    start = torch.zeros_like(y)
    res = solve_conjugate(f, y, start, max_iter=0)
    assert res.iterations == 0 and torch.equal(res.x, start)
    exact = f.argmin(y)
    again = solve_conjugate(f, y, exact, max_iter=50, gtol=1e-3)
    assert again.iterations == 0 and torch.equal(again.x, exact)


def test_batched_lbfgs_matches_solving_each_sample_alone():
    f = _SmoothConvex(4)
    y = torch.randn(6, 4, generator=torch.Generator().manual_seed(6)) * 2
    batch = solve_conjugate(f, y, method="lbfgs", max_iter=200, gtol=1e-5).x
    single = torch.cat(
        [solve_conjugate(f, y[i : i + 1], max_iter=200, gtol=1e-5).x for i in range(6)]
    )
    assert torch.allclose(batch, single, atol=1e-4)


class _SmoothConvex(nn.Module):
    """f(x) = sum softplus(W x) + 0.5 ||x||^2: strongly convex, not quadratic; shape-agnostic."""

    def __init__(self, dim: int):
        super().__init__()
        self.W = nn.Parameter(torch.randn(dim, dim, generator=torch.Generator().manual_seed(9)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return nn.functional.softplus(flat @ self.W.T).sum(dim=1) + 0.5 * (flat**2).sum(dim=1)


@pytest.mark.parametrize("method", ["lbfgs", "adam"])
def test_non_quadratic_voxel_shaped_solution_satisfies_grad_f_equals_y(method):
    f = _SmoothConvex(2 * 2 * 2 * 2)
    y = torch.randn(5, 2, 2, 2, 2, generator=torch.Generator().manual_seed(7))
    res = solve_conjugate(f, y, method=method, max_iter=1000, gtol=1e-4)
    assert res.x.shape == y.shape and res.converged
    residual = potential_gradient(f, res.x) - y  # checked independently of the solver
    assert float(residual.flatten(1).norm(dim=1).max()) <= 1.5e-4


def test_bad_arguments_raise_config_errors():
    f, y = Quadratic(2), torch.zeros(3, 2)
    with pytest.raises(ConfigError, match="unknown conjugate solver"):
        solve_conjugate(f, y, method="newton")
    with pytest.raises(ConfigError, match="max_iter"):
        solve_conjugate(f, y, max_iter=-1)
    with pytest.raises(ConfigError, match="x_init has shape"):
        solve_conjugate(f, y, torch.zeros(3, 3))


def test_fit_identity_makes_an_icnn_gradient_the_identity_and_keeps_it_convex():
    torch.manual_seed(0)
    f = DenseICNN(2, hidden=(32, 32))
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(256, 2, generator=gen)
    before = float((potential_gradient(f, x) - x).pow(2).mean())
    loss = fit_identity(f, lambda: torch.randn(128, 2, generator=gen), steps=300, lr=3e-3)
    after = float((potential_gradient(f, x) - x).pow(2).mean())
    assert after < 1e-2 * before and after < 1e-3 and loss < 1e-2
    assert all(bool((layer.weight >= 0).all()) for layer in [*f.convex_layers, f.final_layer])


# torch's L-BFGS searches the batch sum in float32 and stops when rounding hides its progress:
# within 1e-3 on an AMD EPYC, at 1.08e-3 (largest norm, 13 iterations) on an Intel Xeon with
# AVX512, so its tolerance here is 3e-3
@pytest.mark.parametrize(
    ("method", "gtol"), [("lbfgs", 1e-4), ("adam", 1e-4), ("lbfgs_torch", 3e-3)]
)
def test_projected_search_finds_the_minimum_over_each_samples_affine_set(method, gtol):
    """`project`: the argmin over x_init + span(Q_i) (a plane per sample), which differs from
    the free argmin; closed form u = -(Q^T A Q)^-1 Q^T (A x0 + b - y)."""
    f = Quadratic(5, seed=3)
    gen = torch.Generator().manual_seed(8)
    y = torch.randn(12, 5, generator=gen) * 2
    x0 = torch.randn(12, 5, generator=gen)
    q = torch.linalg.qr(torch.randn(12, 5, 2, generator=gen))[0]  # [12, 5, 2], orthonormal

    def project(g: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        qr = q if rows is None else q[rows]
        return (qr @ (qr.transpose(1, 2) @ g.unsqueeze(2))).squeeze(2)

    res = solve_conjugate(f, y, x0, method=method, max_iter=2000, gtol=gtol, project=project)
    a, b = f.A.detach(), f.b.detach()
    qaq = q.transpose(1, 2) @ a @ q
    rhs = (q.transpose(1, 2) @ (x0 @ a + b - y).unsqueeze(2)).squeeze(2)
    expected = x0 - (q @ torch.linalg.solve(qaq, rhs).unsqueeze(2)).squeeze(2)
    assert res.converged
    assert float((res.x - expected).norm(dim=1).max()) <= 5 * gtol + 1e-4
    assert float((res.x - x0 - project(res.x - x0, None)).abs().max()) < 1e-5  # stayed in it
    assert float((res.x - f.argmin(y)).norm(dim=1).min()) > 0.1  # not the free argmin
