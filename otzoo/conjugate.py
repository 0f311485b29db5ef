"""Batched convex-conjugate solvers and identity pre-training for gradient-map potentials.

The conjugate point of a potential f at y is x_hat(y) = argmin_x f(x) - <x, y>, so that
f*(y) = <x_hat, y> - f(x_hat) and grad f(x_hat) = y. For a batch of y the problems are
independent (the batch sum separates), so one solver runs them all at once: every sample keeps
its own L-BFGS history, step size and stopping test, and a sample that reached the tolerance
stops moving (and stops costing evaluations) while the others go on.

Solvers: `lbfgs` (batched L-BFGS with a per-sample backtracking Armijo line search), `adam`
(per-sample Adam with a cosine step-size decay, as in Amos 2023), and `lbfgs_torch`
(torch.optim.LBFGS with strong-Wolfe search over the whole batch tensor, kept for comparison).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from otzoo.errors import ConfigError
from otzoo.nets.icnn import potential_gradient

CONJUGATE_SOLVERS = ("lbfgs", "adam", "lbfgs_torch")


@dataclass(frozen=True)
class ConjugateResult:
    """A solved batch: detached argmins, each sample's final gradient norm, iterations run."""

    x: Tensor  # [B, ...] like y
    grad_norm: Tensor  # [B], Euclidean norm of grad f(x) - y per sample
    iterations: int
    converged: bool  # every sample reached grad_norm <= gtol
    evaluations: int = 0  # batched value-and-gradient calls of f (line searches included)


Projection = Callable[[Tensor, Tensor | None], Tensor]  # (gradients [b, ...], their rows) -> same


class _Problem:
    """f(x) - <x, y> on flattened rows, evaluated on any subset of the batch (rows `idx`).

    With `project`, each gradient is projected (per sample) onto a subspace: a search started in
    an affine set parallel to it then stays there, because every L-BFGS step is a combination of
    gradients and past steps (Adam's per-coordinate step is projected too, `restrict`), and it
    ends at the minimum over that set."""

    def __init__(self, f: nn.Module, y: Tensor, project: Projection | None = None):
        self.f, self.shape, self.project = f, y.shape[1:], project
        self.y = y.detach().flatten(1)
        self.evaluations = 0

    def value_grad(self, x: Tensor, idx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y = self.y if idx is None else self.y[idx]
        self.evaluations += 1
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            value = self.f(xg.view(-1, *self.shape)) - (xg * y).sum(dim=1)
            (grad,) = torch.autograd.grad(value.sum(), xg)
        return value.detach(), self.restrict(grad, idx)

    def restrict(self, d: Tensor, idx: Tensor | None = None) -> Tensor:
        """Flat rows d projected onto the search's subspace (as they are without `project`)."""
        if self.project is None:
            return d
        return self.project(d.view(-1, *self.shape), idx).flatten(1)


def _check(max_iter: int, gtol: float) -> None:
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:
        raise ConfigError(f"conjugate max_iter must be an int >= 0, got {max_iter!r}")
    if not gtol >= 0:
        raise ConfigError(f"conjugate gtol must be >= 0, got {gtol!r}")


def _two_loop(
    g: Tensor, s: Tensor, yv: Tensor, rho: Tensor, gamma: Tensor, order: list[int]
) -> Tensor:
    """Per-sample L-BFGS direction -H g; pairs with rho == 0 are skipped (they add nothing)."""
    q = g.clone()
    alphas = []
    for k in reversed(order):  # newest first
        a = rho[k] * (s[k] * q).sum(dim=1)
        q -= a[:, None] * yv[k]
        alphas.append(a)
    r = gamma[:, None] * q
    for k, a in zip(order, reversed(alphas), strict=True):  # oldest first
        b = rho[k] * (yv[k] * r).sum(dim=1)
        r += (a - b)[:, None] * s[k]
    return -r


def _accept(v_t: Tensor, g_t: Tensor, v0: Tensor, slope: Tensor, step: Tensor, d: Tensor) -> Tensor:
    """Armijo decrease, or Hager-Zhang's approximate Wolfe test where rounding hides the decrease.

    Near the optimum f(x + t d) - f(x) falls below the float precision of f, so a pure Armijo
    test fails and the solve stalls at grad norms ~ sqrt(eps); a value within eps_f of f(x) with
    a much flatter directional derivative still marks an acceptable step.
    """
    armijo = v_t <= v0 + 1e-4 * step * slope
    eps_f = 1e-6 * (v0.abs() + 1.0)
    flat = (v_t <= v0 + eps_f) & ((g_t * d).sum(dim=1).abs() <= 0.9 * slope.abs())
    return torch.isfinite(v_t) & (armijo | flat)


def lbfgs(
    problem: _Problem, x0: Tensor, max_iter: int, gtol: float, history: int = 10, max_ls: int = 20
) -> tuple[Tensor, Tensor, int]:
    """Batched L-BFGS; returns (x [B, D], grad norms [B], iterations)."""
    x = x0.detach().flatten(1).clone()
    batch, dim = x.shape
    value, grad = problem.value_grad(x)
    s = x.new_zeros(history, batch, dim)
    yv = x.new_zeros(history, batch, dim)
    rho = x.new_zeros(history, batch)
    gamma = x.new_ones(batch)
    alive = torch.ones(batch, dtype=torch.bool, device=x.device)  # False once a search fails
    it = 0
    while it < max_iter:
        active = ((grad.norm(dim=1) > gtol) & alive).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        order = [(it - 1 - k) % history for k in reversed(range(min(it, history)))]
        g = grad[active]
        d = _two_loop(g, s[:, active], yv[:, active], rho[:, active], gamma[active], order)
        slope = (g * d).sum(dim=1)
        uphill = slope >= 0  # only possible for a non-convex f: fall back to steepest descent
        d[uphill], slope[uphill] = -g[uphill], -(g[uphill] ** 2).sum(dim=1)
        x_a, v_a = x[active], value[active]
        new_x, new_v, new_g = x_a.clone(), v_a.clone(), g.clone()
        step = torch.ones_like(v_a)
        pending = torch.arange(len(active), device=x.device)
        for _ in range(max_ls):
            trial = x_a[pending] + step[pending, None] * d[pending]
            v_t, g_t = problem.value_grad(trial, active[pending])
            ok = _accept(v_t, g_t, v_a[pending], slope[pending], step[pending], d[pending])
            done = pending[ok]
            new_x[done], new_v[done], new_g[done] = trial[ok], v_t[ok], g_t[ok]
            pending = pending[~ok]
            if pending.numel() == 0:
                break
            step[pending] *= 0.5
        alive[active[pending]] = False  # no decrease even at a tiny step: stop that sample
        ds, dy = new_x - x_a, new_g - g
        sy = (ds * dy).sum(dim=1)
        valid = sy > 1e-10 * ds.norm(dim=1) * dy.norm(dim=1)
        slot = it % history
        s[slot, active], yv[slot, active] = ds, dy
        rho[slot, active] = torch.where(valid, 1.0 / sy.clamp(min=1e-30), torch.zeros_like(sy))
        gamma[active] = torch.where(valid, sy / (dy**2).sum(dim=1).clamp(min=1e-30), gamma[active])
        x[active], value[active], grad[active] = new_x, new_v, new_g
        it += 1
    return x, grad.norm(dim=1), it


def adam(
    problem: _Problem,
    x0: Tensor,
    max_iter: int,
    gtol: float,
    lr: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.999),
    final_lr_fraction: float = 1e-4,
) -> tuple[Tensor, Tensor, int]:
    """Batched Adam with the step size decaying by a cosine over max_iter (w2ot's schedule)."""
    x = x0.detach().flatten(1).clone()
    m, v = torch.zeros_like(x), torch.zeros_like(x)
    _, grad = problem.value_grad(x)
    b1, b2 = betas
    it = 0
    while it < max_iter:
        active = (grad.norm(dim=1) > gtol).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        g = grad[active]
        m[active] = b1 * m[active] + (1 - b1) * g
        v[active] = b2 * v[active] + (1 - b2) * g**2
        m_hat, v_hat = m[active] / (1 - b1 ** (it + 1)), v[active] / (1 - b2 ** (it + 1))
        cos = 0.5 * (1 + math.cos(math.pi * it / max_iter))
        lr_t = lr * (final_lr_fraction + (1 - final_lr_fraction) * cos)
        x[active] -= problem.restrict(lr_t * m_hat / (v_hat.sqrt() + 1e-8), active)
        _, grad[active] = problem.value_grad(x[active], active)
        it += 1
    return x, grad.norm(dim=1), it


def lbfgs_torch(
    problem: _Problem, x0: Tensor, max_iter: int, gtol: float, history: int = 10
) -> tuple[Tensor, Tensor, int]:
    """torch.optim.LBFGS on the batch sum; it stops on the largest gradient entry, so it is
    given gtol / sqrt(D), which guarantees every sample's norm <= gtol when it stops there."""
    x = x0.detach().flatten(1).clone().requires_grad_(True)
    if max_iter > 0:
        opt = torch.optim.LBFGS(
            [x],
            lr=1.0,
            max_iter=max_iter,
            max_eval=25 * max_iter,
            history_size=history,
            line_search_fn="strong_wolfe",
            tolerance_grad=gtol / math.sqrt(x.shape[1]),
            tolerance_change=1e-12,  # stops once float32 rounding hides any progress
        )

        def closure() -> Tensor:
            opt.zero_grad()
            value, grad = problem.value_grad(x)
            x.grad = grad
            return value.sum()

        opt.step(closure)
        it = int(opt.state[x].get("n_iter", 0))
    else:
        it = 0
    _, grad = problem.value_grad(x.detach())
    return x.detach(), grad.norm(dim=1), it


def solve_conjugate(
    f: nn.Module,
    y: Tensor,
    x_init: Tensor | None = None,
    method: str = "lbfgs",
    max_iter: int = 100,
    gtol: float = 1e-3,
    project: Projection | None = None,
) -> ConjugateResult:
    """x_hat(y) = argmin_x f(x) - <x, y> for a batch y [B, ...], started at x_init (default y).

    Stops when every sample's gradient norm ||grad f(x) - y|| is <= gtol or after max_iter
    iterations. f's parameters get no gradient; the result is detached. `project(g, rows)`
    restricts the search to x_init plus a subspace (per sample; `rows` None for the whole
    batch): the argmin over that affine set, its gradient norms measured within it.
    """
    _check(max_iter, gtol)
    if method not in CONJUGATE_SOLVERS:
        raise ConfigError(
            f"unknown conjugate solver {method!r}; use one of {', '.join(CONJUGATE_SOLVERS)}"
        )
    x0 = y if x_init is None else x_init
    if x0.shape != y.shape:
        raise ConfigError(f"x_init has shape {list(x0.shape)} but y has {list(y.shape)}")
    problem = _Problem(f, y, project)
    flags = [p.requires_grad for p in f.parameters()]
    f.requires_grad_(False)  # no graph to the parameters: the solve only needs grad in x
    try:
        run = {"lbfgs": lbfgs, "adam": adam, "lbfgs_torch": lbfgs_torch}[method]
        x, norms, it = run(problem, x0, max_iter, gtol)
    finally:
        for p, flag in zip(f.parameters(), flags, strict=True):
            p.requires_grad_(flag)
    converged = bool((norms <= gtol).all())
    return ConjugateResult(x.view_as(y).detach(), norms, it, converged, problem.evaluations)


def batch_dot(a: Tensor, b: Tensor) -> Tensor:
    """<a_i, b_i> per sample, over every element (the correlation form's cost, -<x, y>)."""
    return (a * b).flatten(1).sum(dim=1)


def sq_dist(a: Tensor, b: Tensor) -> Tensor:
    """Mean over the batch of ||a - b||^2, summed over every element of a sample (the cycle
    and regression losses of gradient-map solvers)."""
    return (a - b).pow(2).flatten(1).sum(dim=1).mean()


def fit_identity(f: nn.Module, sample: Callable[[], Tensor], steps: int, lr: float = 1e-3) -> float:
    """Pre-train a potential so that grad f(x) ~ x on samples; returns the last loss.

    Starting a gradient map at the identity is the reference start of W2GN and Amos 2023.
    Loss: mean over the batch of ||grad f(x) - x||^2 / D. An ICNN is re-projected onto its
    convex set (`clamp_convex`) after every step.
    """
    opt = torch.optim.Adam(f.parameters(), lr=lr)
    project = getattr(f, "clamp_convex", None)
    loss = torch.zeros(())
    for _ in range(steps):
        x = sample()
        loss = (potential_gradient(f, x, create_graph=True) - x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if project is not None:
            project()
    return float(loss.detach())
