"""Kaggle 3D MNIST .h5: a tiny file written by the test, and every kind of broken file."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from otzoo.data import DataConfig, load_digit_set
from otzoo.data.sources import load_kaggle_h5, load_source
from otzoo.errors import DataError


def _write_h5(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


def _arrays(n_train: int = 30, n_test: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = np.zeros((n, 4096), dtype=np.float64)
        x[:, rng.integers(0, 4096, 40)] = rng.uniform(0.2, 1.0, (n, 40))
        out[f"X_{split}"] = x
        out[f"y_{split}"] = np.arange(n) % 10
    return out


def test_round_trip_axes_and_pooling(tmp_path: Path) -> None:
    arrays = _arrays()
    arrays["X_train"][0] = 0.0
    arrays["X_train"][0, 1 * 256 + 2 * 16 + 3] = 0.5  # voxel x=1, y=2, z=3
    path = _write_h5(tmp_path / "full_dataset_vectors.h5", arrays)
    vol, digits = load_kaggle_h5(path)
    assert vol.shape == (40, 16, 16, 16) and vol.dtype == np.float32
    assert np.bincount(digits).tolist() == [4] * 10
    assert vol[0, 3, 2, 1] == 0.5 and vol[0].sum() == 0.5  # stored (x, y, z) -> our [D=z, H=y, W=x]
    np.testing.assert_allclose(vol[30:].reshape(10, -1).sum(1), arrays["X_test"].sum(1), rtol=1e-6)


@pytest.mark.parametrize("rotation", ["none", "z"])
def test_kaggle_source_feeds_the_digit_set(tmp_path: Path, rotation: str) -> None:
    path = _write_h5(tmp_path / "k.h5", _arrays())
    for grid in (16, 8):
        cfg = DataConfig(data=f"kaggle:{path}", grid=grid, test_fraction=0.25, rotation=rotation)
        ds = load_digit_set(cfg, seed=0)
        assert ds.volumes.shape == (40, 3, grid, grid, grid)
        assert ds.is_test.sum() == 10
        assert ds.volumes.min() == -1.0 and ds.volumes.max() <= 1.0
    mass16 = (
        load_digit_set(DataConfig(data=f"kaggle:{path}", coloring="none"), 0).volumes + 1
    ).sum()
    mass8 = (
        load_digit_set(DataConfig(data=f"kaggle:{path}", grid=8, coloring="none"), 0).volumes + 1
    ).sum()
    assert float(mass8) * 8 == pytest.approx(float(mass16), rel=0.02)  # area resampling keeps mass


def test_missing_file_and_not_hdf5(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.h5: file not found"):
        load_source(f"kaggle:{tmp_path / 'nope.h5'}")
    text = tmp_path / "notes.h5"
    text.write_text("this is not HDF5\n")
    with pytest.raises(DataError, match="notes.h5: not a readable HDF5 file") as info:
        load_kaggle_h5(text)
    assert "\n" not in str(info.value)


def test_truncated_hdf5(tmp_path: Path) -> None:
    path = _write_h5(tmp_path / "cut.h5", _arrays())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="cut.h5: not a readable HDF5 file"):
        load_kaggle_h5(path)


def test_missing_key_names_it_and_the_keys_found(tmp_path: Path) -> None:
    arrays = _arrays()
    del arrays["y_test"]
    path = _write_h5(tmp_path / "k.h5", arrays)
    with pytest.raises(
        DataError, match=r"missing dataset 'y_test' \(found: X_test, X_train, y_train\)"
    ):
        load_kaggle_h5(path)


def test_wrong_shapes_and_labels(tmp_path: Path) -> None:
    arrays = _arrays()
    arrays["X_train"] = np.zeros((30, 1000))
    path = _write_h5(tmp_path / "a.h5", arrays)
    with pytest.raises(DataError, match=r"'X_train' has shape \(30, 1000\), expected \(N, 4096\)"):
        load_kaggle_h5(path)
    arrays = _arrays()
    arrays["y_test"] = np.arange(9)
    path = _write_h5(tmp_path / "b.h5", arrays)
    with pytest.raises(DataError, match=r"'y_test' has shape \(9,\), expected \(10,\)"):
        load_kaggle_h5(path)
    arrays = _arrays()
    arrays["y_train"][0] = 11
    path = _write_h5(tmp_path / "c.h5", arrays)
    with pytest.raises(DataError, match="digits 0-9"):
        load_kaggle_h5(path)
