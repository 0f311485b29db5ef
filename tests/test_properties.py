"""Property-based tests (hypothesis): parsers and loaders either succeed with the right value
or fail with a one-line otzoo error, never with another exception."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otzoo.config import parse_overrides
from otzoo.data import parse_pair
from otzoo.data.sources import read_idx_images, read_idx_labels
from otzoo.errors import ConfigError, DataError
from otzoo.registry import get_solver

NOT = get_solver("not")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.integers(0, 9), st.integers(0, 9), st.sampled_from(["", " ", "  "]))
def test_digit_pairs_parse_exactly(a, b, pad):
    text = f"{pad}{a}-{b}{pad}"
    if a == b:
        try:
            parse_pair(text)
        except DataError as err:
            assert "\n" not in str(err)
        else:
            raise AssertionError(f"{text!r} should be refused")
    else:
        spec = parse_pair(text)
        assert (spec.kind, spec.source, spec.target) == ("digits", a, b)


@FAST
@given(st.text(max_size=12))
def test_any_text_parses_or_is_a_one_line_data_error(text):
    try:
        spec = parse_pair(text)
    except DataError as err:
        assert "\n" not in str(err) and str(err)
    else:
        assert spec.raw.strip() == text.strip()


@FAST
@given(st.integers(-(10**9), 10**9), st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_typed_overrides_round_trip(n, lr):
    out = parse_overrides([f"steps={n}", f"lr_t={lr!r}", "t_residual=false", "hidden=8,4"], NOT)
    assert out == {"steps": n, "lr_t": float(repr(lr)), "t_residual": False, "hidden": (8, 4)}


@FAST
@given(
    st.sampled_from(
        ["steps", "t_iters", "lr_t", "t_residual", "hidden", "grid", "coloring", "nokey"]
    ),
    st.text(max_size=10),
)
def test_any_override_is_typed_or_a_one_line_config_error(key, value):
    try:
        out = parse_overrides([f"{key}={value}"], NOT)
    except ConfigError as err:
        assert "\n" not in str(err)
    else:
        assert key in out


def _idx(arr: np.ndarray, magic: int) -> bytes:
    dims = b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return magic.to_bytes(4, "big") + dims + arr.astype(np.uint8).tobytes()


@FAST
@given(
    st.integers(1, 6),
    st.integers(1, 9),
    st.integers(1, 9),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_idx_round_trip_on_random_arrays(n, h, w, gz, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, h, w), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    with tempfile.TemporaryDirectory() as d:
        pi, pl = Path(d) / "images", Path(d) / "labels"
        for path, data in ((pi, _idx(images, 2051)), (pl, _idx(labels, 2049))):
            path.write_bytes(gzip.compress(data) if gz else data)
        assert np.array_equal(read_idx_images(pi), images)
        assert np.array_equal(read_idx_labels(pl), labels)


@FAST
@given(st.binary(max_size=64))
def test_idx_readers_refuse_garbage_with_a_data_error(blob):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f"
        path.write_bytes(blob)
        for reader in (read_idx_images, read_idx_labels):
            try:
                reader(path)
            except DataError as err:
                assert "\n" not in str(err) and str(path) in str(err)
