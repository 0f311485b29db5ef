"""Metric functions shared by every solver: one definition each (docs/design.md, "Metrics").

All return Python floats and accept CPU or CUDA tensors; numerics that need it run in float64 on
CPU. A metric of a non-finite input (a diverged map) is NaN rather than an exception, so a
comparison report still shows the failed solver instead of crashing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from otzoo.data.transforms import (
    VOXEL_CHROMA,
    VOXEL_WHITE,
    dominant_color,
    lit_voxels,
    nearest_hue,
    unit_range,
)
from otzoo.runtime import to_device


def _per_sample_dim(x: torch.Tensor) -> int:
    return int(np.prod(x.shape[1:])) if x.dim() > 1 else 1


def transport_cost(x: torch.Tensor, tx: torch.Tensor) -> float:
    """Mean over samples of ||x - T(x)||^2 / D, D = elements per sample.

    Per-element scale, the same as the NOT T-loss; multiply by D/2 for the usual W2 cost.
    """
    if x.shape != tx.shape:
        raise ValueError(f"transport_cost: x {tuple(x.shape)} and T(x) {tuple(tx.shape)} differ")
    if x.shape[0] == 0:
        raise ValueError("transport_cost needs at least one sample")
    diff = x.detach().double() - tx.detach().to(x.device).double()
    return float(diff.pow(2).reshape(x.shape[0], -1).mean(dim=1).mean())


def color_preservation(
    tx: torch.Tensor, color_labels: torch.Tensor, palette: torch.Tensor
) -> float:
    """Share of samples whose output's dominant colour equals the colour label of its input."""
    labels = torch.as_tensor(color_labels).reshape(-1)
    if tx.shape[0] != labels.shape[0]:
        raise ValueError(
            f"color_preservation: {tx.shape[0]} outputs but {labels.shape[0]} colour labels"
        )
    if labels.shape[0] == 0:
        raise ValueError("color_preservation needs at least one sample")
    pred = dominant_color(tx.detach(), palette).reshape(-1).cpu()
    return float((pred == labels.cpu().to(pred.dtype)).double().mean())


def color_purity(tx: torch.Tensor, color_labels: torch.Tensor, palette: torch.Tensor) -> float:
    """Mean over outputs of the share of their lit voxels that show the input's color.

    Where `color_preservation` votes on the mean color (a map that speckles a digit with other
    colors over a colored fog still passes it), this looks at every lit voxel (brightest channel
    above LIT_THRESHOLD): right when its nearest palette hue is the input's, or when it is white
    (achromatic with its darkest channel >= VOXEL_WHITE: rgby stroke centres at V ~ 1 are);
    wrong when another hue or a dim gray, which no real digit has (a map that draws new strokes
    without a color draws them gray). An output with no hued lit voxel scores 0 (it kept no
    color). Inputs and real digits score 1.
    """
    labels = torch.as_tensor(color_labels).reshape(-1).cpu()
    if tx.dim() != 5 or tx.shape[0] != labels.shape[0] or labels.shape[0] == 0:
        raise ValueError(
            f"color_purity: needs outputs [N, C, D, H, W] and N color labels; got "
            f"{tuple(tx.shape)} and {labels.shape[0]} labels"
        )
    u = unit_range(tx.detach()).cpu()
    hue = nearest_hue(u.movedim(1, -1), palette.cpu(), VOXEL_CHROMA)  # [N, D, H, W]
    lit = lit_voxels(u)
    white = (hue < 0) & (u.amin(dim=1) >= VOXEL_WHITE)
    right = lit & ((hue == labels.view(-1, 1, 1, 1)) | white)
    share = right.flatten(1).sum(1).double() / lit.flatten(1).sum(1).double().clamp(min=1)
    hued = (lit & (hue >= 0)).flatten(1).any(1)
    return float(torch.where(hued, share, torch.zeros_like(share)).mean())


def worst_color_accuracy(hits: torch.Tensor, color_labels: torch.Tensor) -> float:
    """Lowest, over the input colors present, of the share of hits (e.g. outputs the judge calls
    the target digit) among that color's inputs: a map that works for two colors of four is
    caught here while its overall accuracy still looks fine."""
    hits = torch.as_tensor(hits).reshape(-1).double().cpu()
    labels = torch.as_tensor(color_labels).reshape(-1).cpu()
    if hits.shape != labels.shape or hits.numel() == 0:
        raise ValueError(f"worst_color_accuracy: {hits.numel()} hits, {labels.numel()} labels")
    return min(float(hits[labels == c].mean()) for c in labels.unique())


HAZE_THRESHOLD = 0.1  # of the [0, 1] brightness: real digits are exactly 0 off the stroke


def lit_share(tx: torch.Tensor, threshold: float = HAZE_THRESHOLD) -> float:
    """Mean share of voxels whose brightest channel, in [0, 1], exceeds `threshold`.

    Voxels in [-1, 1] as [N, C, D, H, W]. Real digits light ~17% of a 16^3 grid; a map that
    leaves a faint haze over the background lights far more while the judge still sees a
    digit of the right color, so this is the metric that catches it (compare with the
    `real target` row)."""
    if tx.dim() != 5 or tx.shape[0] == 0:
        raise ValueError(f"lit_share wants voxels [N, C, D, H, W], got {tuple(tx.shape)}")
    return float(lit_voxels(unit_range(tx.detach()), threshold).double().mean())


def _as_features(a: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"frechet_distance: {name} must be features [N >= 2, F], got {a.shape}")
    return a


def _sqrt_psd(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix; rounding negatives in the spectrum become 0."""
    vals, vecs = np.linalg.eigh(cov)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to features a [N, F] and b [M, F] (FID formula).

    ||mu_a - mu_b||^2 + Tr(Sa + Sb - 2 (Sa Sb)^1/2). Tr (Sa Sb)^1/2 is a sum of singular values,
    never a sqrtm with imaginary parts to patch: it equals the nuclear norm of Sa^1/2 Sb^1/2, and
    also of Xa Xb^T / sqrt((N-1)(M-1)) for the centred features, which is exact and cheaper when
    N, M < F (singular covariances). The cheaper of the two is used.
    """
    fa, fb = _as_features(a, "a"), _as_features(b, "b")
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"frechet_distance: feature sizes differ ({fa.shape[1]} vs {fb.shape[1]})")
    if not (np.isfinite(fa).all() and np.isfinite(fb).all()):
        return float("nan")
    (n, f), m = fa.shape, fb.shape[0]
    mu_a, mu_b = fa.mean(0), fb.mean(0)
    xa, xb = fa - mu_a, fb - mu_b
    tr_a = float((xa * xa).sum()) / (n - 1)
    tr_b = float((xb * xb).sum()) / (m - 1)
    if n * m * min(n, m) < 2 * f**3:
        cross = (xa @ xb.T) / np.sqrt((n - 1) * (m - 1))
    else:
        cross = _sqrt_psd(xa.T @ xa / (n - 1)) @ _sqrt_psd(xb.T @ xb / (m - 1))
    tr_sqrt = float(np.linalg.svd(cross, compute_uv=False).sum())
    diff = mu_a - mu_b
    return max(float(diff @ diff) + tr_a + tr_b - 2.0 * tr_sqrt, 0.0)


def w2_to_target(out: torch.Tensor, target: torch.Tensor, max_samples: int = 1000) -> float:
    """Exact squared W2 between output and target samples (ot.emd2, uniform weights), over D.

    Cost ||u - v||^2 / D, the per-element scale of `transport_cost`. Only the first
    `max_samples` of each set are used: exact OT is O(n^3 log n), and taking the first ones keeps
    the number reproducible.
    """
    import ot

    if out.shape[1:] != target.shape[1:]:
        raise ValueError(
            f"w2_to_target: sample shapes differ ({tuple(out.shape[1:])} vs "
            f"{tuple(target.shape[1:])})"
        )
    if max_samples < 1:
        raise ValueError(f"w2_to_target: max_samples must be >= 1, got {max_samples}")
    u = out[:max_samples].detach().cpu().double().reshape(min(len(out), max_samples), -1)
    v = target[:max_samples].detach().cpu().double().reshape(min(len(target), max_samples), -1)
    if u.shape[0] == 0 or v.shape[0] == 0:
        raise ValueError("w2_to_target needs at least one sample in each set")
    if not (torch.isfinite(u).all() and torch.isfinite(v).all()):
        return float("nan")
    dim = u.shape[1]
    cost = (u.pow(2).sum(1)[:, None] + v.pow(2).sum(1)[None, :] - 2.0 * u @ v.T).clamp(min=0.0)
    cost = (cost / dim).numpy()
    n, m = cost.shape
    wa, wb = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    value = ot.emd2(wa, wb, cost, numItermax=emd_iterations(n, m))
    return max(float(value), 0.0)


def emd_iterations(n: int, m: int) -> int:
    """The network simplex's iteration cap for an exact n x m plan (ot.emd / ot.emd2): one rule
    for every exact plan otzoo scores with, growing with the plan instead of POT's fixed 100,000."""
    return max(100_000, 50 * n * m)


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Energy distance 2 E|A - B| - E|A - A'| - E|B - B'| between two sample sets, flattened
    per sample, over sqrt(D) (the per-element scale). Zero iff the laws agree; it needs no
    kernel width or entropic scale, and two sets of n cost O(n^2 D)."""
    if a.shape[1:] != b.shape[1:] or len(a) == 0 or len(b) == 0:
        raise ValueError(
            f"energy_distance needs two non-empty sets of one sample shape, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    u = a.detach().cpu().double().reshape(len(a), -1)
    v = b.detach().cpu().double().reshape(len(b), -1)
    if not (torch.isfinite(u).all() and torch.isfinite(v).all()):
        return float("nan")
    value = 2 * torch.cdist(u, v).mean() - torch.cdist(u, u).mean() - torch.cdist(v, v).mean()
    return float(value) / math.sqrt(u.shape[1])


def diversity(samples: torch.Tensor) -> float:
    """Mean over inputs of the per-element variance over Z stochastic outputs; 0 if deterministic.

    `samples` is [N, Z, ...] (Z outputs T(x, z) per input x). The variance is the unbiased one
    over Z, so it estimates E_x Var_z T(x, z) per element without a 1/Z bias.
    """
    if samples.dim() < 2 or samples.shape[0] == 0 or samples.shape[1] < 2:
        raise ValueError(
            f"diversity needs samples [N >= 1, Z >= 2, ...], got {tuple(samples.shape)}; "
            "draw at least two noises per input"
        )
    s = samples.detach().double().reshape(samples.shape[0], samples.shape[1], -1)
    return float(s.var(dim=1, correction=1).mean())


def batched_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Apply a transport map to x in batches without autograd; results land on x's device.

    Bounds memory when evaluating a whole test split, and lets the map live on a GPU while the
    data stays on the CPU.
    """
    if batch_size < 1:
        raise ValueError(f"batched_apply: batch_size must be >= 1, got {batch_size}")
    if x.shape[0] == 0:
        raise ValueError("batched_apply got no samples; pass at least one")
    outs = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            if device is not None:
                xb = to_device(xb, device)
            yb = fn(xb)
            if not isinstance(yb, torch.Tensor):
                kind = type(yb).__name__
                raise TypeError(f"batched_apply: the map returned {kind}, not a tensor")
            outs.append(yb.to(x.device))
    return torch.cat(outs)
