"""Pairs derived from the digit set: latent noise -> digits, and unpaired restoration.

Spec forms (registered with `register_pair_kind`, loaded through `PAIR_LOADERS`):

- `noise-D` or `noise-D:S`: x = seeded Gaussian noise of shape C x S^3 (default S = 4, C = the
  target's channel count), y = samples of digit D. x and y have different shapes (for `otm`).
- `noisy-clean`, `gray-color`, `masked-full`, each optionally `:D` for one digit (e.g.
  `noisy-clean:3`; without it all ten digits): x = degraded samples, y = clean samples. Within
  each split the samples are shuffled and cut in two halves: the first half is degraded into x,
  the second half is y, so no clean target is the original of any source (unpaired). The clean
  original of every test source is kept in `extras["x_test_clean"]`.

Degradations (fixed, seeded, documented here): `noisy-clean` adds N(0, NOISE_STD^2) per voxel and
clamps to [-1, 1]; `gray-color` replaces every channel by the channel mean; `masked-full` sets
a cube of side MASK_FRACTION * grid to -1 (all channels), centred on a random lit voxel of the
sample and moved inside the grid.

`spec.source` / `spec.target` hold a digit only where one is meant: the digit of `noise-D` is
the target, `noisy-clean:3` has source = target = 3, and the all-digit forms have None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from otzoo.data.pairs import (
    PAIR_LOADERS,
    DataConfig,
    PairData,
    load_digit_set,
    stream_generator,
    voxel_pair_data,
)
from otzoo.data.spec import PairSpec, register_pair_kind
from otzoo.errors import DataError

NOISE_STD = 0.3  # noisy-clean: std of the additive noise, on the [-1, 1] voxel scale
MASK_FRACTION = 0.5  # masked-full: cube side as a fraction of the grid side
LATENT_SIDE = 4  # noise-D: default latent grid side
NOISE_MIN_TRAIN = 4096  # noise-D: at least this many latent training draws
_HALVES, _NOISE_X, _DEGRADE = 10, 11, 12  # random streams, apart from pairs.py's 0-2

RESTORATIONS = ("noisy-clean", "gray-color", "masked-full")
NOISE_FORM = "noise-D or noise-D:S (C x S^3 Gaussian latent -> digit D, default S=4), e.g. noise-5"
RESTORE_FORM = (
    "noisy-clean, gray-color or masked-full, optionally :D for one digit, e.g. noisy-clean:3"
)


@dataclass(frozen=True)
class DerivedSpec(PairSpec):
    """A derived pair; `source` / `target` are None where no single digit is meant."""

    source: int | None = None
    target: int | None = None
    latent_side: int = 0  # noise-D: side S of the C x S^3 latent


def _build_noise(m: re.Match[str], raw: str) -> PairSpec:
    side = int(m.group(2)) if m.group(2) is not None else LATENT_SIDE
    if side < 1:
        raise DataError(f"pair {raw!r}: latent side must be >= 1; expected {NOISE_FORM}")
    return DerivedSpec(raw=raw, kind="noise", target=int(m.group(1)), latent_side=side)


def _build_restoration(m: re.Match[str], raw: str) -> PairSpec:
    digit = int(m.group(2)) if m.group(2) is not None else None
    return DerivedSpec(raw=raw, kind=m.group(1), source=digit, target=digit)


def _take(ds_field: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return ds_field.index_select(0, idx)


def _noise_pair(spec: PairSpec, cfg: DataConfig, seed: int) -> PairData:
    """x = Gaussian latents C x S^3, y = the target digit's samples (the digit set's split)."""
    ds = load_digit_set(cfg, seed)
    side = getattr(spec, "latent_side", 0) or LATENT_SIDE
    channels = ds.volumes.shape[1]
    g = stream_generator(seed, _NOISE_X)
    tensors: dict[str, torch.Tensor] = {}
    labels: dict[str, torch.Tensor] = {}
    for split, flag in (("train", False), ("test", True)):
        idx = torch.nonzero((ds.digit == spec.target) & (ds.is_test == flag)).squeeze(1)
        tensors[f"y_{split}"] = _take(ds.volumes, idx)
        labels[f"y_{split}_digit"] = _take(ds.digit, idx)
        labels[f"y_{split}_color"] = _take(ds.color, idx)
        n = max(len(idx), NOISE_MIN_TRAIN) if split == "train" else len(idx)
        tensors[f"x_{split}"] = torch.randn(n, channels, side, side, side, generator=g)
    return PairData(
        spec=spec,
        kind="voxel",
        x_shape=(channels, side, side, side),
        y_shape=tuple(ds.volumes.shape[1:]),
        labels=labels,
        palette=ds.palette.clone(),  # the targets' colors (x, noise, has none to preserve)
        color_names=list(ds.color_names),
        **tensors,
    )


def add_noise(x: torch.Tensor, g: torch.Generator, std: float = NOISE_STD) -> torch.Tensor:
    """x + N(0, std^2) per voxel, clamped to [-1, 1]."""
    return (x + std * torch.randn(x.shape, generator=g)).clamp(-1.0, 1.0)


def to_gray(x: torch.Tensor) -> torch.Tensor:
    """Every channel replaced by the channel mean (a colorless digit of the same brightness)."""
    return x.mean(dim=1, keepdim=True).expand_as(x).clone()


def mask_box(x: torch.Tensor, g: torch.Generator, fraction: float = MASK_FRACTION) -> torch.Tensor:
    """A cube of side fraction * grid set to -1 in every channel, centred on a random lit voxel
    (uniform position for an empty sample) and shifted to lie inside the grid."""
    n, _, d, h, w = x.shape
    sides = [max(1, round(fraction * s)) for s in (d, h, w)]
    lit = (x > -1.0).any(dim=1).flatten(1).float()
    lit[lit.sum(dim=1) == 0] = 1.0
    flat = torch.multinomial(lit, 1, generator=g).squeeze(1)
    centre = (flat // (h * w), (flat // w) % h, flat % w)
    inside = []
    for c, side, size in zip(centre, sides, (d, h, w), strict=True):
        start = (c - side // 2).clamp(0, size - side)
        ar = torch.arange(size)
        inside.append((ar >= start[:, None]) & (ar < start[:, None] + side))
    box = inside[0][:, :, None, None] & inside[1][:, None, :, None] & inside[2][:, None, None, :]
    return x.masked_fill(box[:, None], -1.0)


def _degrade(kind: str, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    if kind == "noisy-clean":
        return add_noise(x, g)
    if kind == "gray-color":
        return to_gray(x)
    return mask_box(x, g)


def _restoration_pair(spec: PairSpec, cfg: DataConfig, seed: int) -> PairData:
    """x = degraded first half of each split, y = clean second half (disjoint samples)."""
    ds = load_digit_set(cfg, seed)
    if spec.kind == "gray-color" and ds.volumes.shape[1] < 2:
        raise DataError(
            f"pair {spec.raw!r} needs colored voxels but coloring={cfg.coloring!r} gives one "
            "channel; use --coloring rgby or hue"
        )
    g_half, g_deg = stream_generator(seed, _HALVES), stream_generator(seed, _DEGRADE)
    tensors: dict[str, torch.Tensor] = {}
    labels: dict[str, torch.Tensor] = {}
    extras: dict[str, torch.Tensor] = {}
    for split, flag in (("train", False), ("test", True)):
        mask = ds.is_test == flag
        if spec.source is not None:
            mask &= ds.digit == spec.source
        idx = torch.nonzero(mask).squeeze(1)
        if len(idx) < 2:
            raise DataError(
                f"pair {spec.raw!r}: the {split} split has {len(idx)} sample(s), too few to cut "
                "into source and target halves; use more samples (--set max_per_digit=N)"
            )
        idx = idx[torch.randperm(len(idx), generator=g_half)]
        n_x = len(idx) - len(idx) // 2
        for side, part in (("x", idx[:n_x].sort().values), ("y", idx[n_x:].sort().values)):
            clean = _take(ds.volumes, part)
            tensors[f"{side}_{split}"] = _degrade(spec.kind, clean, g_deg) if side == "x" else clean
            labels[f"{side}_{split}_digit"] = _take(ds.digit, part)
            labels[f"{side}_{split}_color"] = _take(ds.color, part)
            if side == "x" and split == "test":
                extras["x_test_clean"] = clean
    return voxel_pair_data(spec, ds, tensors, labels, extras)


register_pair_kind(r"noise-([0-9])(?::([0-9]+))?", _build_noise, NOISE_FORM)
register_pair_kind(rf"({'|'.join(RESTORATIONS)})(?::([0-9]))?", _build_restoration, RESTORE_FORM)
PAIR_LOADERS["noise"] = _noise_pair
for _kind in RESTORATIONS:
    PAIR_LOADERS[_kind] = _restoration_pair
