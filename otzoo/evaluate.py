"""One evaluation for every solver (docs/design.md, "Metrics"): the same metrics, the same test
samples, for training-time metrics, `compare`, `eval`, `bench w2` and the benchmarks alike.

`evaluate` takes any transport callable (x -> T(x)), so a trained solver, the identity map and
a baseline are scored by the same code. A metric that does not apply to the data is left out
(never faked), and a map whose outputs hold NaN or Inf gets NaN for every metric of its outputs
instead of crashing the report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from otzoo.data import PairData
from otzoo.data.transforms import dominant_color
from otzoo.data.vectors import VectorPairData
from otzoo.judge import Judge, JudgeConfig, get_judge, weakest_digits
from otzoo.metrics import (
    batched_apply,
    color_preservation,
    color_purity,
    diversity,
    frechet_distance,
    lit_share,
    transport_cost,
    w2_to_target,
    worst_color_accuracy,
)
from otzoo.metrics.uvp import evaluate_map
from otzoo.report import METRIC_NAMES
from otzoo.runs import load_run, recorded_selection, recorded_train_seconds
from otzoo.runtime import deterministic_kernels, seeded_rng

if TYPE_CHECKING:
    from otzoo.config import RunConfig
    from otzoo.solver import Solver

NAN = float("nan")
UVP_SAMPLES = 2**14  # known-map pairs: L2-UVP on this many fresh samples of P (the benchmark's)
UVP_SEED = 12345  # ... drawn with one seed for every map
DIAGNOSTIC_SAMPLES = 256  # test inputs a solver's own diagnostics (e.g. ODE straightness) see

Transport = Callable[[torch.Tensor], torch.Tensor]
Log = Callable[[str], None]


def target_digit(data: PairData) -> int | None:
    """The digit the map should produce, when the pair has one."""
    target = getattr(data.spec, "target", None)
    return target if isinstance(target, int) and not isinstance(target, bool) else None


def wants_judge(data: PairData) -> bool:
    """Judge metrics (target accuracy, fid) need voxel data with a target digit."""
    return data.kind == "voxel" and target_digit(data) is not None and len(data.y_shape) == 4


def judge_applies(data: PairData, judge: Judge | None) -> bool:
    """... and a judge trained on samples of the same channel count."""
    return (
        judge is not None
        and wants_judge(data)
        and int(data.y_shape[0]) == int(judge.info["in_channels"])
    )


def fid_floor(data: PairData, judge: Judge, max_samples: int = 1000, seed: int = 0) -> float:
    """Frechet distance between two random halves of the real target test set: the noise floor
    of `fid` at this sample size (a map cannot be expected to score below it)."""
    y = data.y_test[:max_samples]
    if len(y) < 4:
        return NAN
    feats = judge.features(y)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    half = len(y) // 2
    return frechet_distance(feats[perm[:half]], feats[perm[half : 2 * half]])


def score_outputs(
    x: torch.Tensor,
    tx: torch.Tensor,
    data: PairData,
    judge: Judge | None = None,
    max_samples: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Metrics of outputs `tx` for inputs `x` (the first len(x) test inputs of `data`)."""
    n = len(x)
    tx = tx.detach().cpu().float()
    finite = bool(torch.isfinite(tx).all())
    out: dict[str, float] = {}
    if tuple(data.x_shape) == tuple(data.y_shape) and tx.shape == x.shape:
        out["transport_cost"] = transport_cost(x.cpu(), tx) if finite else NAN
    colors = data.labels.get("x_test_color")
    pal = data.palette
    if (
        colors is not None
        and pal is not None
        and tx.dim() == 5
        and tx.shape[1] == pal.shape[1]
        and len(colors) >= n
    ):
        out["color_preservation"] = color_preservation(tx, colors[:n], pal) if finite else NAN
        if pal.shape[1] > 1:  # one channel ("none" coloring) has no hue to keep
            out["color_purity"] = color_purity(tx, colors[:n], pal) if finite else NAN
    elif colors is None and pal is not None and tx.dim() == 5 and tx.shape[1] == pal.shape[1] > 1:
        # no input color (a latent source): each output against its own dominant color, so a
        # generated digit whose hue changes along the stroke scores below the real ones' 1
        out["color_purity"] = color_purity(tx, dominant_color(tx, pal), pal) if finite else NAN
    if judge is not None and judge_applies(data, judge):
        y = data.y_test[:max_samples]
        if finite:
            hits = judge.predict(tx) == target_digit(data)
            out["target_accuracy"] = float(hits.double().mean())
            if colors is not None and len(colors) >= n:
                out["worst_color_accuracy"] = worst_color_accuracy(hits, colors[:n])
            out["fid"] = frechet_distance(judge.features(tx), judge.features(y))
        else:
            out["target_accuracy"] = out["fid"] = NAN
            if colors is not None:
                out["worst_color_accuracy"] = NAN
        out["fid_floor"] = fid_floor(data, judge, max_samples, seed)
    if data.kind == "voxel" and tx.dim() == 5:
        out["lit_share"] = lit_share(tx) if finite else NAN
    if tx.shape[1:] == data.y_test.shape[1:]:
        out["w2_to_target"] = w2_to_target(tx, data.y_test, max_samples) if finite else NAN
    clean = data.extras.get("x_test_clean")
    if clean is not None and clean.shape[1:] == tx.shape[1:] and len(clean) >= n:
        # the same formula as transport cost: mean over samples of ||clean - T(x)||^2 / D
        out["mse_to_clean"] = transport_cost(clean[:n].cpu().float(), tx) if finite else NAN
    return out


def _diversity(
    transport: Transport, x: torch.Tensor, draws: int, batch_size: int, device: Any
) -> float:
    """Mean per-x variance of T(x, z) over `draws` noise draws per input."""
    xr = x.repeat_interleave(draws, dim=0)
    outs = batched_apply(transport, xr, batch_size, device).detach().cpu()
    if not bool(torch.isfinite(outs).all()):
        return NAN
    return diversity(outs.view(len(x), draws, *outs.shape[1:]))


def evaluate(
    transport: Transport,
    data: PairData,
    judge: Judge | None = None,
    *,
    stochastic: bool = False,
    max_samples: int = 1000,
    diversity_inputs: int = 64,
    diversity_draws: int = 8,
    batch_size: int = 128,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Score a transport map on the first `max_samples` test inputs of `data`.

    `stochastic` maps draw their own noise on every call; they also get `diversity`. All noise
    comes from torch's global RNG seeded with `seed` inside a forked RNG state, so the same
    map and seed give the same numbers and the caller's RNG is untouched.
    """
    x = data.x_test[:max_samples]
    with seeded_rng(seed, device):
        tx = batched_apply(transport, x, batch_size, device)
        metrics = score_outputs(x, tx, data, judge, max_samples, seed)
        if stochastic:
            n = min(diversity_inputs, len(x))
            metrics["diversity"] = _diversity(transport, x[:n], diversity_draws, batch_size, device)
        if isinstance(data, VectorPairData) and data.known is not None:
            metrics.update(known_map_scores(transport, data, batch_size, device))
    return {k: metrics[k] for k in METRIC_NAMES if k in metrics}


def known_map_scores(
    transport: Transport, data: VectorPairData, batch_size: int = 4096, device: Any = None
) -> dict[str, float]:
    """L2-UVP and cosine against the known optimal map, on UVP_SAMPLES fresh samples of P
    drawn with UVP_SEED: the same draw for every map, as the W2 benchmark scores them."""
    assert data.known is not None

    def apply(part: torch.Tensor) -> torch.Tensor:
        return batched_apply(transport, part, batch_size, device)

    scores = evaluate_map(data.known, apply, n=UVP_SAMPLES, seed=UVP_SEED)
    return {"l2_uvp": scores["l2_uvp"], "cosine": scores["cosine"]}


def reference_rows(
    data: PairData, judge: Judge | None = None, max_samples: int = 1000, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Context for a table: the identity map, and real target test samples as the "outputs"
    (paired with the test inputs in order, so its cost is that of an arbitrary pairing).
    The identity row is left out when source and target shapes differ (e.g. noise-5)."""
    rows = {}
    if tuple(data.x_shape) == tuple(data.y_shape):
        rows["identity"] = evaluate(lambda x: x, data, judge, max_samples=max_samples, seed=seed)
    n = min(len(data.x_test), len(data.y_test), max_samples)
    if tuple(data.y_test.shape[1:]) == tuple(data.y_shape):
        real = score_outputs(data.x_test[:n], data.y_test[:n], data, judge, max_samples, seed)
        rows["real target"] = {k: real[k] for k in METRIC_NAMES if k in real}
    return rows


WEAK_JUDGE = 0.90  # below this test accuracy, judged metrics are flagged


def quality_warnings(rows: dict[str, dict[str, float]], judge: Judge | None) -> list[str]:
    """What makes a table misleading, in words: a judge too weak to trust, or a map whose fid
    is below the real-vs-real noise floor (its difference from real targets is noise)."""
    out = []
    if judge is not None and judge.accuracy < WEAK_JUDGE:
        out.append(
            f"the judge's test accuracy is {judge.accuracy:.2f} (< {WEAK_JUDGE:.2f}; weakest "
            f"digits {weakest_digits(judge.info)}): target accuracy and fid are unreliable here; "
            "use more data or a larger grid (--preset quick)"
        )
    for name, m in rows.items():
        fid, floor = m.get("fid", NAN), m.get("fid_floor", NAN)
        if name != "real target" and 0 < fid < floor:
            out.append(
                f"{name}: fid {fid:.3g} is below its floor {floor:.3g}: within sampling noise "
                "of the real targets, not better than them"
            )
    return out


def apply_map(solver: Solver, x: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """`solver.transport` on x in eval mode, batch by batch, without gradients (pictures)."""
    solver.train_mode(False)
    try:
        return batched_apply(solver.transport, x, batch_size, solver.device)
    finally:
        solver.train_mode(True)


def evaluate_solver(
    solver: Solver,
    data: PairData,
    judge: Judge | None = None,
    seed: int = 0,
    max_samples: int = 1000,
) -> dict[str, float]:
    """The standard metrics of a solver (eval mode, no gradients, seeded noise): what
    `compare` and `eval` report, and what training logs on `max_samples` test inputs."""
    solver.train_mode(False)
    try:
        metrics = evaluate(
            solver.transport,
            data,
            judge,
            stochastic="stochastic" in solver.tags,
            max_samples=max_samples,
            device=solver.device,
            seed=seed,
        )
        x = data.x_test[: min(max_samples, DIAGNOSTIC_SAMPLES)].to(solver.device)
        metrics.update(solver.diagnostics(x))
        return {k: metrics[k] for k in METRIC_NAMES if k in metrics}
    finally:
        solver.train_mode(True)


def evaluate_run(
    run_dir: Path, device: str = "cpu", judge_cfg: JudgeConfig = JudgeConfig(), log: Log = print
) -> tuple[RunConfig, dict[str, dict[str, float]], Judge | None]:
    """Score one run folder of `otzoo train` with the comparison's metrics.

    Returns its config, the rows (the run under its solver id, then the references) and the
    judge used.
    """
    run, solver, data = load_run(Path(run_dir), device=device)
    judge = None
    if wants_judge(data):
        judge = get_judge(run.data, run.seed, judge_cfg, solver.device, log)
    with deterministic_kernels():
        row = evaluate_solver(solver, data, judge, run.seed)
        refs = reference_rows(data, judge, seed=run.seed)
    row["train_seconds"] = recorded_train_seconds(Path(run_dir))
    row.update(recorded_selection(Path(run_dir)))
    return run, {run.solver: row, **refs}, judge
