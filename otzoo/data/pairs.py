"""The voxel digit set (all ten digits, one seeded split) and the pairs cut from it.

Every pair and the judge classifier read the same cached `DigitSet`, so the split is shared by
construction: a judge trained on `DigitSet` train samples never sees a pair's test samples.
Randomness comes from independent seeded streams (split, rendering, color, fixed samples), so
changing the coloring does not change the split, and the same seed always gives identical
tensors.

Every sample is kept twice: its canonical intensity volume (unrotated, uncolored) with its
color, and the colored volume rendered from it once with one random rotation (the fixed test
and training sets). `render` is the one way from the first to the second, so a training batch
drawn afresh (`FreshSide`: a new rotation, new points, at every draw) comes from exactly the
distribution of the fixed test set.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from otzoo.data.render import FreshSide, render
from otzoo.data.sources import DATA_FORMS, RawDigits, load_source
from otzoo.data.spec import PairSpec, parse_pair
from otzoo.data.transforms import (
    COLOR_NAMES,
    COLORINGS,
    draw_colors,
    extrude,
    palette,
    resample_volume,
)
from otzoo.errors import DataError
from otzoo.runtime import available_memory_bytes

ROTATIONS = ("none", "z", "3d")
STYLES = ("extruded", "pointcloud")
CHUNK = 2048  # samples voxelized at a time: bounds peak memory on the 70,000-digit IDX set
_SPLIT, _RENDER, _COLOR, _FIXED = 0, 1, 2, 3  # independent random streams


@dataclass(frozen=True)
class DataConfig:
    """How digits become voxels; field names share one `--set` namespace with other configs."""

    data: str = "embedded"  # "embedded" | "idx:DIR" | "kaggle:FILE.h5"
    grid: int = 16  # voxel grid side (any >= 8)
    coloring: str = "rgby"  # "rgby" | "hue" | "none"
    rotation: str = "none"  # "none" | "z" (about the depth axis) | "3d" (uniform on SO(3))
    style: str = "extruded"  # "extruded" (2D digits lifted along depth) | "pointcloud"
    augment: bool = True  # rotated / point-cloud data: new rotation, points at every draw
    fixed_samples: int = 0  # discrete solvers' fixed sample: 0 = one rotated copy per digit
    test_fraction: float = 0.2  # per digit, round(test_fraction * n) samples are test
    max_per_digit: int = 0  # 0: all samples; > 0: a seeded random subset of that many per digit

    def __post_init__(self) -> None:
        data = self.data.strip() if isinstance(self.data, str) else ""
        if not (data == "embedded" or data.startswith(("idx:", "kaggle:"))):
            raise DataError(f"unknown data source {self.data!r}; use {DATA_FORMS}")
        if isinstance(self.grid, bool) or not isinstance(self.grid, int) or self.grid < 8:
            raise DataError(f"grid={self.grid!r}: the voxel grid side must be an integer >= 8")
        if self.coloring not in COLORINGS:
            raise DataError(f"coloring={self.coloring!r}: use one of {', '.join(COLORINGS)}")
        if self.rotation not in ROTATIONS:
            raise DataError(f"rotation={self.rotation!r}: use one of {', '.join(ROTATIONS)}")
        if self.style not in STYLES:
            raise DataError(f"style={self.style!r}: use one of {', '.join(STYLES)}")
        if not isinstance(self.augment, bool):
            raise DataError(f"augment={self.augment!r}: use true or false")
        if isinstance(self.fixed_samples, bool) or not isinstance(self.fixed_samples, int):
            raise DataError(f"fixed_samples={self.fixed_samples!r}: use an integer >= 0")
        if self.fixed_samples < 0:
            raise DataError(
                f"fixed_samples={self.fixed_samples}: use 0 (one rotated copy of each training "
                "digit) or > 0"
            )
        if self.fixed_samples > 0 and not self.draws_afresh:
            raise DataError(
                f"fixed_samples={self.fixed_samples}: only rotated or point-cloud data with "
                "augment=true are drawn afresh; drop fixed_samples or set --rotation/--style"
            )
        if not 0.0 < float(self.test_fraction) < 1.0:
            raise DataError(f"test_fraction={self.test_fraction!r}: use a number in (0, 1)")
        if isinstance(self.max_per_digit, bool) or not isinstance(self.max_per_digit, int):
            raise DataError(f"max_per_digit={self.max_per_digit!r}: use an integer >= 0")
        if self.max_per_digit < 0:
            raise DataError(f"max_per_digit={self.max_per_digit}: use 0 (all samples) or > 0")

    @property
    def draws_afresh(self) -> bool:
        """Whether training draws are rendered afresh: the data have a random transform (a
        rotation, point clouds) and `augment` is on."""
        return self.augment and (self.rotation != "none" or self.style == "pointcloud")


@dataclass
class DigitSet:
    """All ten digits, voxelized and colored, with the split. Cached: treat as read-only."""

    volumes: torch.Tensor  # float32 [N, C, G, G, G] in [-1, 1], background -1
    digit: torch.Tensor  # int64 [N]
    color: torch.Tensor  # int64 [N], index into palette
    is_test: torch.Tensor  # bool [N]
    palette: torch.Tensor  # float32 [K, C] in [0, 1]
    config: DataConfig
    canonical: torch.Tensor  # float32 [N, G, G, G] in [0, 1]: unrotated, uncolored
    hue: torch.Tensor  # float32 [N]: each sample's hue ("hue" coloring; zeros otherwise)

    @property
    def color_names(self) -> list[str]:
        return COLOR_NAMES[self.config.coloring]

    def fresh_side(self, indices: torch.Tensor) -> FreshSide | None:
        """Fresh draws from the samples at `indices` (None when the data have no random
        transform or `augment` is off: training then reads the fixed volumes)."""
        if not self.config.draws_afresh:
            return None
        return FreshSide(
            self.canonical.index_select(0, indices),
            self.color.index_select(0, indices),
            self.hue.index_select(0, indices),
            self.config,
        )


@dataclass
class PairData:
    """Train/test samples of a source -> target pair, with their labels."""

    spec: PairSpec
    kind: str  # "voxel"
    x_shape: tuple[int, ...]  # per-sample shape, e.g. (3, 16, 16, 16)
    y_shape: tuple[int, ...]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    labels: dict[str, torch.Tensor]  # {x,y}_{train,test}_{digit,color}
    palette: torch.Tensor | None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    color_names: list[str] = field(default_factory=list)
    fresh: tuple[FreshSide, FreshSide] | None = None  # x, y training draws rendered afresh

    def counts(self) -> dict[str, dict[str, int]]:
        """Sample counts per split ("x_train", ...): {"total": n, <color name>: n, ...}."""
        out: dict[str, dict[str, int]] = {}
        for split in ("x_train", "x_test", "y_train", "y_test"):
            row = {"total": int(getattr(self, split).shape[0])}
            colors = self.labels.get(f"{split}_color")
            if colors is not None and self.color_names:
                hist = torch.bincount(colors.cpu(), minlength=len(self.color_names))
                row.update(
                    {name: int(k) for name, k in zip(self.color_names, hist.tolist(), strict=True)}
                )
            out[split] = row
        return out


def stream_generator(seed: int, *stream: int) -> torch.Generator:
    """A torch generator for one named random stream of `seed` (streams are independent, so a
    new use of randomness gets its own stream number instead of shifting the others); further
    numbers name sub-streams (e.g. one per block of fresh samples)."""
    hi, lo = np.random.SeedSequence([seed, *stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed((int(hi) << 31) ^ int(lo))


def _n_test(fraction: float, n: int) -> int:
    return int(math.floor(fraction * n + 0.5))  # round half up, unlike Python's round()


def split_indices(raw: RawDigits, cfg: DataConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices to use (ascending) and their test flags, stratified per digit.

    Each digit's samples are shuffled once by the seed; the first round(test_fraction * n) are
    its test samples, the rest train. A cap of k per digit keeps the first round(test_fraction
    * k) test and the first k - that many train samples of those lists, so any capped split is
    a subset of the uncapped one, test within test and train within train: a judge trained
    with one cap never sees the test samples of a pair loaded with another.
    """
    g = stream_generator(seed, _SPLIT)
    chosen, test = [], []
    for d in range(10):
        idx = np.flatnonzero(raw.digits == d)
        if len(idx) == 0:
            raise DataError(
                f"digit {d} has no samples in data source {raw.name}; use a source "
                "that holds all ten digits"
            )
        perm = idx[torch.randperm(len(idx), generator=g).numpy()]
        n_full = _n_test(cfg.test_fraction, len(perm))
        k = min(cfg.max_per_digit or len(perm), len(perm))
        n_test = _n_test(cfg.test_fraction, k)
        if n_test == 0 or n_test == k:
            raise DataError(
                f"digit {d}: {k} samples in {raw.name} leave an empty "
                f"{'test' if n_test == 0 else 'train'} split at test_fraction="
                f"{cfg.test_fraction}; use more samples per digit or another test_fraction"
            )
        chosen.append(np.concatenate([perm[:n_test], perm[n_full : n_full + k - n_test]]))
        test.append(np.arange(k) < n_test)
    indices, flags = np.concatenate(chosen), np.concatenate(test)
    order = np.argsort(indices, kind="stable")
    return indices[order], flags[order]


def _canonical(raw: np.ndarray, is_3d: bool, grid: int) -> torch.Tensor:
    """One chunk of raw intensities -> unrotated [n, G, G, G] in [0, 1] (2D digits extruded)."""
    data = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))
    return resample_volume(data, grid) if is_3d else extrude(data, grid)


def check_fits_in_memory(n: int, channels: int, grid: int) -> None:
    """Refuse, before allocating, a digit set that would take more than half of the memory
    available now (its float32 voxels; training needs room beside them)."""
    need = n * channels * grid**3 * 4
    free = available_memory_bytes()
    if free is not None and need > free / 2:
        gib = 2.0**30
        raise DataError(
            f"grid={grid}: {n} digits of {channels} x {grid}^3 voxels need ~{need / gib:.1f} GiB "
            f"(available: ~{free / gib:.1f} GiB); use a smaller --grid (16 is the default) or "
            "fewer digits (--set max_per_digit=N)"
        )


def load_digit_set(cfg: DataConfig, seed: int = 0) -> DigitSet:
    """All ten digits of `cfg.data` as colored voxels in [-1, 1], with the seeded split.

    Cached in-process by (cfg, seed): the result is shared, so treat it as read-only (files
    changed on disk during a process are not re-read; `load_digit_set.cache_clear()` forgets).
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise DataError(f"seed={seed!r}: use an integer >= 0")
    return _cached_digit_set(cfg, int(seed))


@lru_cache(maxsize=4)
def _cached_digit_set(cfg: DataConfig, seed: int) -> DigitSet:
    raw = load_source(cfg.data)
    indices, is_test = split_indices(raw, cfg, seed)
    pal = palette(cfg.coloring)
    channels, g = pal.shape[1], cfg.grid
    check_fits_in_memory(len(indices), channels + 1, g)  # + 1: the canonical intensities
    color, hue = draw_colors(len(indices), cfg.coloring, stream_generator(seed, _COLOR))
    canonical = torch.empty(len(indices), g, g, g)
    volumes = torch.empty(len(indices), channels, g, g, g)
    g_render = stream_generator(seed, _RENDER)  # rotations, points
    for start in range(0, len(indices), CHUNK):
        part = slice(start, start + CHUNK)
        canonical[part] = _canonical(raw.data[indices[part]], raw.is_3d, g)
        volumes[part] = render(canonical[part], color[part], hue[part], cfg, g_render)
    return DigitSet(
        volumes=volumes,
        digit=torch.from_numpy(raw.digits[indices].copy()),
        color=color,
        is_test=torch.from_numpy(is_test),
        palette=pal,
        config=cfg,
        canonical=canonical,
        hue=hue,
    )


load_digit_set.cache_clear = _cached_digit_set.cache_clear  # type: ignore[attr-defined]


def _digits_pair(spec: PairSpec, cfg: DataConfig, seed: int) -> PairData:
    """x = samples of the source digit, y = samples of the target digit, same split as the set.

    With a random transform (rotations, point clouds) training batches are drawn afresh
    (`PairData.fresh`), and `x_train` / `y_train` are the fixed sample that solvers fitting
    once (discrete OT) see: one rendered copy per training digit, or `cfg.fixed_samples` fresh
    draws per side.
    """
    ds = load_digit_set(cfg, seed)
    tensors: dict[str, torch.Tensor] = {}
    labels: dict[str, torch.Tensor] = {}
    fresh: dict[str, FreshSide | None] = {}
    g_fixed = stream_generator(seed, _FIXED)
    for side, digit in (("x", spec.source), ("y", spec.target)):
        for split, flag in (("train", False), ("test", True)):
            idx = torch.nonzero((ds.digit == digit) & (ds.is_test == flag)).squeeze(1)
            side_fresh = ds.fresh_side(idx) if split == "train" else None
            if side_fresh is not None and cfg.fixed_samples > 0:
                volumes, pick = side_fresh.sample(cfg.fixed_samples, g_fixed)
                tensors[f"{side}_{split}"] = volumes
                idx = idx.index_select(0, pick)
            else:
                tensors[f"{side}_{split}"] = ds.volumes.index_select(0, idx)
            labels[f"{side}_{split}_digit"] = ds.digit.index_select(0, idx)
            labels[f"{side}_{split}_color"] = ds.color.index_select(0, idx)
            if split == "train":
                fresh[side] = side_fresh
    data = voxel_pair_data(spec, ds, tensors, labels)
    fx, fy = fresh["x"], fresh["y"]
    data.fresh = (fx, fy) if fx is not None and fy is not None else None
    return data


def voxel_pair_data(
    spec: PairSpec,
    ds: DigitSet,
    tensors: dict[str, torch.Tensor],
    labels: dict[str, torch.Tensor],
    extras: dict[str, torch.Tensor] | None = None,
) -> PairData:
    """A voxel PairData whose x and y are drawn from one DigitSet (same shape and palette)."""
    shape = tuple(ds.volumes.shape[1:])
    return PairData(
        spec=spec,
        kind="voxel",
        x_shape=shape,
        y_shape=shape,
        labels=labels,
        palette=ds.palette.clone(),
        extras=extras or {},
        color_names=list(ds.color_names),
        **tensors,
    )


PairLoader = Callable[[PairSpec, DataConfig, int], PairData]
PAIR_LOADERS: dict[str, PairLoader] = {"digits": _digits_pair}


def load_pair(spec: str | PairSpec, cfg: DataConfig = DataConfig(), seed: int = 0) -> PairData:
    """Load a pair ("3-5": threes -> fives) as train/test tensors with labels."""
    parsed = parse_pair(spec) if isinstance(spec, str) else spec
    loader = PAIR_LOADERS.get(parsed.kind)
    if loader is None:
        raise DataError(
            f"pair {parsed.raw!r}: no loader for pair kind {parsed.kind!r} "
            f"(known: {', '.join(sorted(PAIR_LOADERS))})"
        )
    return loader(parsed, cfg, seed)
