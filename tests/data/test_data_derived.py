"""Derived pairs: noise-D (latent -> digits) and the unpaired restoration pairs."""

from __future__ import annotations

import pytest
import torch

from otzoo.data import DataConfig, load_digit_set, load_pair, parse_pair
from otzoo.data.derived import NOISE_MIN_TRAIN, to_gray
from otzoo.errors import DataError

TINY = DataConfig(grid=8, max_per_digit=10)  # 8 train + 2 test per digit


def _rows(t: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in t.flatten(1)}


@pytest.mark.parametrize(
    ("text", "kind", "source", "target", "side"),
    [
        ("noise-5", "noise", None, 5, 4),
        ("noise-0:2", "noise", None, 0, 2),
        ("noisy-clean", "noisy-clean", None, None, 0),
        ("gray-color:3", "gray-color", 3, 3, 0),
        (" masked-full:9 ", "masked-full", 9, 9, 0),
    ],
)
def test_spec_forms(text, kind, source, target, side):
    spec = parse_pair(text)
    assert (spec.kind, spec.source, spec.target, spec.latent_side) == (kind, source, target, side)


@pytest.mark.parametrize("text", ["noisy-clean:12", "noise-5:0", "noise-", "gray-colour"])
def test_bad_specs_are_one_line_errors(text):
    with pytest.raises(DataError) as err:
        parse_pair(text)
    assert "\n" not in str(err.value) and text in str(err.value)


def test_noise_pair_shapes_and_labels():
    pair = load_pair("noise-5", TINY, seed=0)
    assert pair.x_shape == (3, 4, 4, 4) and pair.y_shape == (3, 8, 8, 8)
    assert pair.x_train.shape == (NOISE_MIN_TRAIN, 3, 4, 4, 4)
    assert pair.x_test.shape[0] == pair.y_test.shape[0] == 2
    assert (
        set(pair.labels["y_train_digit"].tolist())
        == {5}
        == set(pair.labels["y_test_digit"].tolist())
    )
    assert abs(float(pair.x_train.mean())) < 0.02 and abs(float(pair.x_train.std()) - 1) < 0.02
    assert "x_test_color" not in pair.labels  # noise has no color; the targets' palette stays
    assert pair.palette is not None and pair.palette.shape == (4, 3)
    gray = load_pair("noise-5:2", DataConfig(grid=8, max_per_digit=10, coloring="none"))
    assert gray.x_shape == (1, 2, 2, 2) and gray.y_shape == (1, 8, 8, 8)


def test_pairs_are_seeded():
    for text in ("noise-5", "masked-full:3"):
        a, b, c = (load_pair(text, TINY, seed=s) for s in (0, 0, 1))
        assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_test, b.x_test)
        assert not torch.equal(a.x_test, c.x_test)


@pytest.mark.parametrize("kind", ["noisy-clean", "gray-color", "masked-full"])
def test_restoration_pair_halves_and_clean_originals(kind):
    ds = load_digit_set(TINY, seed=0)
    pair = load_pair(kind, TINY, seed=0)
    assert pair.spec.target is None and pair.x_shape == pair.y_shape == (3, 8, 8, 8)
    # test split: clean sources and targets are the two halves of the digit set's test samples
    clean = pair.extras["x_test_clean"]
    assert clean.shape == pair.x_test.shape == (10, 3, 8, 8, 8) and len(pair.y_test) == 10
    assert not _rows(clean) & _rows(pair.y_test)
    assert _rows(clean) | _rows(pair.y_test) == _rows(ds.volumes[ds.is_test])
    assert len(pair.x_train) == len(pair.y_train) == 40
    assert _rows(pair.y_train) <= _rows(ds.volumes[~ds.is_test])
    if kind == "gray-color":  # x_train is gray(clean): the train halves are checked through it
        gray_x, gray_y = pair.x_train, to_gray(pair.y_train)
        assert not _rows(gray_x) & _rows(gray_y)
        assert _rows(gray_x) | _rows(gray_y) == _rows(to_gray(ds.volumes[~ds.is_test]))
    # labels describe the samples: all ten digits, and the clean original's digit per source
    for split in ("train", "test"):
        assert set(pair.labels[f"x_{split}_digit"].tolist()) <= set(range(10))
    lookup = {
        r.numpy().tobytes(): int(d) for r, d in zip(ds.volumes.flatten(1), ds.digit, strict=True)
    }
    digits = [lookup[r.numpy().tobytes()] for r in clean.flatten(1)]
    assert digits == pair.labels["x_test_digit"].tolist()
    assert pair.palette is not None and len(pair.labels["x_test_color"]) == 10


def test_degradations():
    noisy = load_pair("noisy-clean", TINY, seed=0)
    gap = float((noisy.x_test - noisy.extras["x_test_clean"]).square().mean())
    assert 0.02 < gap < 0.09 and noisy.x_test.min() >= -1 and noisy.x_test.max() <= 1

    gray = load_pair("gray-color", TINY, seed=0)
    assert torch.equal(gray.x_test[:, 0], gray.x_test[:, 1])
    assert torch.equal(gray.x_test[:, 1], gray.x_test[:, 2])
    assert torch.allclose(gray.x_test.mean(1), gray.extras["x_test_clean"].mean(1))

    masked = load_pair("masked-full", TINY, seed=0)
    x, clean = masked.x_test, masked.extras["x_test_clean"]
    kept = x != -1
    assert torch.equal(x[kept], clean[kept])  # only a box is touched, and it is set to -1
    changed = (x != clean).flatten(1).sum(1)
    assert (changed > 0).all()  # the box is centred on a lit voxel
    box = (x == -1).all(1) & (clean > -1).any(1)  # masked voxels that were lit
    assert (box.flatten(1).sum(1) <= 4**3).all()  # a 4^3 cube on the 8^3 grid at most


def test_one_digit_restoration_and_errors():
    pair = load_pair("noisy-clean:3", TINY, seed=0)
    assert pair.spec.target == 3
    for key in ("x_train_digit", "y_train_digit", "x_test_digit", "y_test_digit"):
        assert set(pair.labels[key].tolist()) == {3}
    assert len(pair.x_test) == len(pair.y_test) == 1  # two test threes, cut in halves
    with pytest.raises(DataError, match="too few"):
        load_pair("noisy-clean:3", DataConfig(grid=8, max_per_digit=3), seed=0)
    with pytest.raises(DataError, match="coloring"):
        load_pair("gray-color", DataConfig(grid=8, max_per_digit=10, coloring="none"))
