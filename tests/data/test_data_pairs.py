"""load_pair / load_digit_set on the embedded digits: shapes, ranges, split, determinism."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from otzoo.data import DataConfig, PairData, load_digit_set, load_pair, parse_pair
from otzoo.data.pairs import split_indices
from otzoo.data.sources import load_source
from otzoo.errors import DataError

TINY = DataConfig(grid=8, max_per_digit=10)


def test_load_pair_shapes_ranges_and_labels() -> None:
    pair = load_pair("3-5", TINY, seed=0)
    assert isinstance(pair, PairData) and pair.kind == "voxel"
    assert pair.spec == parse_pair("3-5")
    assert pair.x_shape == pair.y_shape == (3, 8, 8, 8)
    for name, n in (("x_train", 8), ("x_test", 2), ("y_train", 8), ("y_test", 2)):
        t = getattr(pair, name)
        assert t.shape == (n, 3, 8, 8, 8) and t.dtype == torch.float32
        assert t.min() == -1.0 and t.max() <= 1.0 and torch.isfinite(t).all()
    # x is the source digit (3), y the target (5): the bug of a notebook that swapped them.
    assert (
        set(pair.labels["x_train_digit"].tolist())
        == {3}
        == set(pair.labels["x_test_digit"].tolist())
    )
    assert (
        set(pair.labels["y_train_digit"].tolist())
        == {5}
        == set(pair.labels["y_test_digit"].tolist())
    )
    assert pair.palette is not None and pair.palette.shape == (4, 3)
    assert pair.extras == {}
    counts = pair.counts()
    assert counts["x_train"]["total"] == 8 and counts["y_test"]["total"] == 2
    assert sum(counts["x_train"][c] for c in ("red", "yellow", "green", "blue")) == 8


def test_pair_is_exactly_the_digit_sets_split() -> None:
    ds = load_digit_set(TINY, seed=0)
    pair = load_pair(parse_pair("3-5"), TINY, seed=0)
    for side, digit in (("x", 3), ("y", 5)):
        for split, flag in (("train", False), ("test", True)):
            mask = (ds.digit == digit) & (ds.is_test == flag)
            assert torch.equal(getattr(pair, f"{side}_{split}"), ds.volumes[mask])
            assert torch.equal(pair.labels[f"{side}_{split}_color"], ds.color[mask])


def test_split_is_stratified_disjoint_and_deterministic() -> None:
    ds = load_digit_set(DataConfig(grid=8, max_per_digit=23, test_fraction=0.3), seed=4)
    for d in range(10):
        mask = ds.digit == d
        assert mask.sum() == 23 and ds.is_test[mask].sum() == 7  # round(0.3 * 23) = 7
    raw = load_source("embedded")
    full_idx, full_test = split_indices(raw, DataConfig(), seed=4)
    assert len(np.unique(full_idx)) == len(full_idx) == 5000 and full_test.sum() == 1000
    # Capped splits nest inside the full one (test in test, train in train): a judge trained
    # with any cap never sees the test samples of a pair loaded with another.
    for cap in (7, 40, 499):
        cap_idx, cap_test = split_indices(raw, DataConfig(max_per_digit=cap), seed=4)
        assert len(cap_idx) == 10 * cap
        assert set(cap_idx[cap_test]) <= set(full_idx[full_test])
        assert set(cap_idx[~cap_test]) <= set(full_idx[~full_test])
    other_idx, other_test = split_indices(raw, DataConfig(), seed=5)
    assert set(other_idx[other_test]) != set(full_idx[full_test])
    # Train and test volumes of one pair never coincide.
    pair = load_pair("1-7", TINY, seed=0)
    dists = torch.cdist(pair.x_test.flatten(1), pair.x_train.flatten(1))
    assert dists.min() > 0


def test_same_seed_gives_identical_tensors_after_cache_clear() -> None:
    cfg = DataConfig(grid=8, max_per_digit=6, rotation="3d", coloring="hue")
    a = load_pair("2-8", cfg, seed=3)
    load_digit_set.cache_clear()
    b = load_pair("2-8", cfg, seed=3)
    for name in ("x_train", "x_test", "y_train", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert all(torch.equal(a.labels[k], b.labels[k]) for k in a.labels)
    c = load_pair("2-8", cfg, seed=4)
    assert not torch.equal(a.x_train, c.x_train)


def test_coloring_does_not_change_the_split() -> None:
    a = load_digit_set(DataConfig(grid=8, max_per_digit=10, coloring="none"), seed=1)
    b = load_digit_set(DataConfig(grid=8, max_per_digit=10, coloring="rgby", rotation="z"), seed=1)
    assert torch.equal(a.is_test, b.is_test) and torch.equal(a.digit, b.digit)
    assert a.volumes.shape[1] == 1 and b.volumes.shape[1] == 3


def test_any_grid_from_8() -> None:
    pair = load_pair("0-1", DataConfig(grid=10, max_per_digit=5), seed=0)
    assert pair.x_train.shape[1:] == (3, 10, 10, 10)
    lit = (pair.x_train > -1).any(dim=1)
    assert not lit[:, :2].any() and not lit[:, 8:].any() and lit[:, 2:8].any()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"data": "mnist"}, "'embedded'.*'idx:DIR'.*'kaggle:FILE.h5'"),
        ({"grid": 4}, "grid"),
        ({"coloring": "rainbow"}, "rgby, hue, none"),
        ({"rotation": "x"}, "none, z, 3d"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"max_per_digit": -1}, "max_per_digit"),
        ({"style": "mesh"}, "extruded, pointcloud"),
        ({"fixed_samples": -3, "rotation": "z"}, "fixed_samples"),
        ({"fixed_samples": 100}, "only rotated or point-cloud data"),
        ({"fixed_samples": 100, "rotation": "z", "augment": False}, "augment=true"),
    ],
)
def test_bad_config_is_a_one_line_data_error(kwargs: dict, match: str) -> None:
    with pytest.raises(DataError, match=match) as info:
        DataConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_empty_source_argument_and_tiny_splits_are_refused() -> None:
    with pytest.raises(DataError, match="unknown data source"):
        load_source("idx:")
    with pytest.raises(DataError, match="empty test split"):
        load_digit_set(DataConfig(grid=8, max_per_digit=2), seed=0)
    with pytest.raises(DataError, match="seed"):
        load_digit_set(TINY, seed=-1)


def test_importing_the_data_package_is_cheap() -> None:
    code = "import sys, otzoo.data; print('mlxtend' in sys.modules, 'h5py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


ROTATED = DataConfig(grid=8, max_per_digit=10, rotation="z")


def _dominant(x: torch.Tensor, pair: PairData) -> torch.Tensor:
    from otzoo.data import dominant_color

    assert pair.palette is not None
    return dominant_color(x, pair.palette)


def test_unrotated_extruded_data_have_no_fresh_draws() -> None:
    assert load_pair("3-5", TINY, seed=0).fresh is None
    assert (
        load_pair("3-5", DataConfig(grid=8, max_per_digit=10, rotation="z", augment=False)).fresh
        is None
    )


@pytest.mark.parametrize("style", ["extruded", "pointcloud"])
def test_fresh_draws_are_new_every_time_reproducible_and_keep_each_digits_color(style: str) -> None:
    from otzoo.batches import for_pair

    pair = load_pair("3-5", DataConfig(grid=8, max_per_digit=10, rotation="z", style=style))
    assert pair.fresh is not None
    fx, fy = pair.fresh
    assert len(fx) == len(pair.x_train) == 8 and len(fy) == 8
    g = torch.Generator().manual_seed(0)
    a, idx_a = fx.sample(64, g)
    b, idx_b = fx.sample(64, g)
    assert a.shape == (64, 3, 8, 8, 8) and a.min() >= -1.0 and a.max() <= 1.0
    # the same training digit drawn twice comes back with a different rotation ...
    same = [(i, j) for i in range(64) for j in range(64) if idx_a[i] == idx_b[j]]
    assert same and all(not torch.equal(a[i], b[j]) for i, j in same)
    # ... and always with its own color (labels follow the drawn indices)
    assert torch.equal(_dominant(a, pair), fx.color[idx_a])
    # the sampler's generator state is all there is: the same state draws the same batch
    batches = for_pair(pair, 16, seed=3, device=torch.device("cpu"))
    state = batches.state()
    first = batches.x()
    batches.set_state(state)
    assert torch.equal(batches.x(), first)
    assert batches.x_all is not None and torch.equal(batches.x_all, pair.x_train)


def test_fresh_draws_come_from_the_test_sets_distribution() -> None:
    """Rendered by the one `render`: fresh draws of the test digits match their fixed rotated
    copies in brightness and lit share (no train/test shift from two rotation paths)."""
    ds = load_digit_set(DataConfig(grid=16, max_per_digit=60, rotation="3d"), seed=0)
    idx = torch.nonzero(ds.is_test).squeeze(1)
    side = ds.fresh_side(idx)
    assert side is not None
    fresh = side.render_at(torch.arange(len(idx)).repeat(4), torch.Generator().manual_seed(1))
    fixed = ds.volumes[idx]

    def lit(x: torch.Tensor) -> float:
        return float(((x + 1) / 2).amax(dim=1).gt(0.15).float().mean())

    assert lit(fresh) == pytest.approx(lit(fixed), rel=0.05)
    assert float((fresh + 1).mean()) == pytest.approx(float((fixed + 1).mean()), rel=0.05)


def test_test_sets_stay_fixed_and_disjoint_under_fresh_draws() -> None:
    a = load_pair("3-5", ROTATED, seed=0)
    load_digit_set.cache_clear()
    b = load_pair("3-5", ROTATED, seed=0)
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_train, b.y_train)
    ds = load_digit_set(ROTATED, seed=0)
    test_rows = {tuple(v.flatten().tolist()) for v in ds.volumes[ds.is_test]}
    assert not any(tuple(v.flatten().tolist()) in test_rows for v in a.x_train)


def test_fixed_samples_sets_the_discrete_solvers_sample() -> None:
    cfg = DataConfig(grid=8, max_per_digit=10, rotation="3d", fixed_samples=50)
    pair = load_pair("3-5", cfg, seed=0)
    assert pair.x_train.shape[0] == 50 == pair.y_train.shape[0]
    assert pair.x_test.shape[0] == 2  # test sets do not change
    assert set(pair.labels["x_train_digit"].tolist()) == {3}
    assert torch.equal(_dominant(pair.x_train, pair), pair.labels["x_train_color"])
    again = load_pair("3-5", cfg, seed=0)
    assert torch.equal(again.x_train, pair.x_train)


def test_pointcloud_digits_keep_the_stroke() -> None:
    """Point counts on the extruded stroke: the lit voxels mostly overlap the extruded digit's,
    with values that vary (counts), unlike the flat extrusion."""
    ext = load_digit_set(DataConfig(max_per_digit=20), seed=0)
    pc = load_digit_set(DataConfig(max_per_digit=20, style="pointcloud"), seed=0)
    assert torch.equal(ext.digit, pc.digit) and torch.equal(ext.color, pc.color)
    lit_e = ((ext.volumes + 1) / 2).amax(dim=1) > 0.15
    lit_p = ((pc.volumes + 1) / 2).amax(dim=1) > 0.15
    iou = float((lit_e & lit_p).sum() / (lit_e | lit_p).sum())
    assert iou > 0.6
    density = pc.volumes[:, 1:].amin(dim=1)[lit_p]  # rgby's V channels: the count density
    assert density.std() > 0.1
