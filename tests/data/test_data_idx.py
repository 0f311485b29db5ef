"""MNIST IDX folders: tiny files written by the test, gzipped and plain, and broken ones."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from otzoo.data import DataConfig, load_digit_set
from otzoo.data.sources import load_idx_dir, load_source
from otzoo.errors import DataError


def _images_bytes(images: np.ndarray, magic: int = 2051) -> bytes:
    n, rows, cols = images.shape
    header = b"".join(v.to_bytes(4, "big") for v in (magic, n, rows, cols))
    return header + images.astype(np.uint8).tobytes()


def _labels_bytes(labels: np.ndarray, magic: int = 2049) -> bytes:
    return (
        magic.to_bytes(4, "big")
        + len(labels).to_bytes(4, "big")
        + labels.astype(np.uint8).tobytes()
    )


def _write(path: Path, data: bytes, gz: bool) -> None:
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def _digits(n_per: int, size: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), n_per)
    images = np.zeros((len(labels), *size), dtype=np.uint8)
    h, w = size
    images[:, h // 4 : 3 * h // 4, w // 3 : 2 * w // 3] = rng.integers(50, 256, (len(labels), 1, 1))
    return images, labels


def _folder(tmp_path: Path, gz: bool, with_test: bool, size=(20, 20)) -> tuple[Path, np.ndarray]:
    images, labels = _digits(3, size, seed=0)
    _write(tmp_path / "train-images-idx3-ubyte", _images_bytes(images), gz)
    _write(tmp_path / "train-labels-idx1-ubyte", _labels_bytes(labels), gz)
    all_images = images
    if with_test:
        t_images, t_labels = _digits(1, size, seed=1)
        _write(tmp_path / "t10k-images-idx3-ubyte", _images_bytes(t_images), not gz)
        _write(tmp_path / "t10k-labels-idx1-ubyte", _labels_bytes(t_labels), not gz)
        all_images = np.concatenate([images, t_images])
    return tmp_path, all_images


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("with_test", [False, True])
def test_idx_folder_round_trip(tmp_path: Path, gz: bool, with_test: bool) -> None:
    folder, images = _folder(tmp_path, gz, with_test)
    x, y = load_idx_dir(folder)
    assert x.shape == (len(images), 20, 20) and x.dtype == np.float32
    np.testing.assert_allclose(x, images / 255.0, atol=1e-7)
    assert np.bincount(y).tolist() == [4 if with_test else 3] * 10


def test_idx_source_feeds_the_digit_set_at_odd_sizes(tmp_path: Path) -> None:
    folder, _ = _folder(tmp_path, gz=True, with_test=True, size=(20, 30))
    ds = load_digit_set(DataConfig(data=f"idx:{folder}", grid=8, test_fraction=0.25), seed=0)
    assert ds.volumes.shape == (40, 3, 8, 8, 8)
    assert ds.is_test.sum() == 10 and torch.equal(torch.bincount(ds.digit), torch.full((10,), 4))
    assert (ds.volumes > -1).any(dim=(1, 2, 3, 4)).all()  # every digit is visible


def test_bad_magic_names_the_file(tmp_path: Path) -> None:
    folder, _ = _folder(tmp_path, gz=False, with_test=False)
    images, _ = _digits(3, (20, 20), seed=0)
    (folder / "train-images-idx3-ubyte").write_bytes(_images_bytes(images, magic=2049))
    with pytest.raises(
        DataError, match=r"train-images-idx3-ubyte: not an IDX image file \(magic 2049"
    ):
        load_source(f"idx:{folder}")


def test_truncated_plain_and_gzipped_files(tmp_path: Path) -> None:
    folder, _ = _folder(tmp_path, gz=False, with_test=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match="train-images-idx3-ubyte: truncated: the header says 30"):
        load_idx_dir(folder)
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(DataError, match="truncated IDX file"):
        load_idx_dir(folder)
    path.unlink()
    images, _ = _digits(3, (20, 20), seed=0)
    gz_path = folder / "train-images-idx3-ubyte.gz"
    gz_path.write_bytes(gzip.compress(_images_bytes(images))[:-20])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: truncated or corrupt gzip"):
        load_idx_dir(folder)


def test_count_mismatch_and_bad_labels(tmp_path: Path) -> None:
    folder, _ = _folder(tmp_path, gz=False, with_test=False)
    labels = np.repeat(np.arange(10), 3)
    (folder / "train-labels-idx1-ubyte").write_bytes(_labels_bytes(labels[:-1]))
    with pytest.raises(DataError, match="30 images but .*train-labels-idx1-ubyte has 29 labels"):
        load_idx_dir(folder)
    labels[0] = 12
    (folder / "train-labels-idx1-ubyte").write_bytes(_labels_bytes(labels))
    with pytest.raises(DataError, match="label 12"):
        load_idx_dir(folder)


def test_missing_folder_files_and_partners(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found"):
        load_source(f"idx:{tmp_path / 'nope'}")
    with pytest.raises(DataError, match="missing train-images-idx3-ubyte"):
        load_source(f"idx:{tmp_path}")
    folder, _ = _folder(tmp_path, gz=False, with_test=False)
    t_images, _ = _digits(1, (20, 20), seed=1)
    (folder / "t10k-images-idx3-ubyte").write_bytes(_images_bytes(t_images))
    with pytest.raises(DataError, match="without its partner .*t10k-labels-idx1-ubyte"):
        load_idx_dir(folder)
    (folder / "t10k-images-idx3-ubyte").write_bytes(_images_bytes(np.zeros((10, 9, 9))))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(_labels_bytes(np.arange(10)))
    with pytest.raises(DataError, match="t10k images are 9x9 but train images are 20x20"):
        load_idx_dir(folder)


def test_a_missing_digit_names_digit_and_source(tmp_path: Path) -> None:
    images, labels = _digits(3, (20, 20), seed=0)
    keep = labels != 7
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_images_bytes(images[keep]))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_labels_bytes(labels[keep]))
    with pytest.raises(DataError, match=f"digit 7 has no samples in data source idx:{tmp_path}"):
        load_digit_set(DataConfig(data=f"idx:{tmp_path}", grid=8, test_fraction=0.3), seed=0)
