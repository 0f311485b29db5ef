"""Vector pairs with a known map (`w2:DIM`, `gauss:DIM[:S]`): spec parsing, shapes, determinism,
unpaired train sets, the known map equal to the benchmark's, fresh batches, one-line errors."""

from __future__ import annotations

import pytest
import torch

from otzoo.data import PairData, load_pair, parse_pair
from otzoo.data.benchmarks import gaussian_pair, w2_mix3_pair
from otzoo.data.vectors import (
    W2_ENV,
    VectorPairData,
    default_w2_dir,
    known_map_pair,
    load_vector_pair,
)
from otzoo.errors import DataError
from tests.conftest import w2_dir, w2_required

W2_DIR = w2_dir()
needs_w2 = w2_required((2,))


def test_specs_parse_to_vector_kinds():
    w2 = parse_pair("w2:16")
    assert (w2.kind, w2.dim, w2.source, w2.target) == ("w2", 16, None, None)
    g = parse_pair(" gauss:8 ")
    assert (g.kind, g.dim, g.pair_seed) == ("gauss", 8, 0)
    assert parse_pair("gauss:8:3").pair_seed == 3


@pytest.mark.parametrize("bad", ["w2:0", "gauss:0", "w2:99999"])
def test_bad_dimension_is_one_line_error(bad):
    with pytest.raises(DataError, match="dimension must be in") as err:
        parse_pair(bad)
    assert "\n" not in str(err.value)


def test_malformed_vector_spec_lists_the_forms():
    with pytest.raises(DataError, match="w2:DIM") as err:
        parse_pair("w2:x")
    assert "gauss:DIM" in str(err.value)


def test_gauss_pair_shapes_kind_and_known_map():
    data = load_vector_pair(parse_pair("gauss:3"), seed=0, n_train=512, n_test=64)
    assert isinstance(data, VectorPairData) and isinstance(data, PairData)
    assert data.kind == "vector" and data.x_shape == (3,) and data.y_shape == (3,)
    assert data.x_train.shape == (512, 3) and data.y_train.shape == (512, 3)
    assert data.x_test.shape == (64, 3) and data.y_test.shape == (64, 3)
    assert data.x_train.dtype == torch.float32
    ref = gaussian_pair(3, seed=0)
    torch.testing.assert_close(data.known.true_map(data.x_test), ref.true_map(data.x_test))
    torch.testing.assert_close(data.extras["x_test_true_map"], ref.true_map(data.x_test))
    assert float(data.extras["var_q"]) == pytest.approx(ref.var_q)
    # Unpaired: y_train is not the image of x_train (independent draws).
    assert not torch.allclose(data.y_train, ref.true_map(data.x_train), atol=1e-3)
    # The targets do follow Q: mean close to Q's mean on 512 draws.
    assert torch.allclose(data.y_train.double().mean(0), ref.moments["mean_q"], atol=0.25)


def test_same_seed_same_tensors_other_seed_other_samples():
    spec = parse_pair("gauss:2")
    a = load_vector_pair(spec, seed=1, n_train=64, n_test=8)
    b = load_vector_pair(spec, seed=1, n_train=64, n_test=8)
    c = load_vector_pair(spec, seed=2, n_train=64, n_test=8)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name))
        assert not torch.equal(getattr(a, name), getattr(c, name))
    # The pair seed (":S") changes the problem, the run seed only the samples.
    x = a.x_test
    assert torch.equal(a.known.true_map(x), c.known.true_map(x))
    other = known_map_pair(parse_pair("gauss:2:1"))
    assert not torch.allclose(other.true_map(x), a.known.true_map(x))


def test_load_pair_routes_vector_specs():
    data = load_pair("gauss:2", seed=0)
    assert isinstance(data, VectorPairData) and data.kind == "vector"
    assert data.x_train.shape[0] >= 2**14  # a large fixed set for the shared trainer


def test_fresh_batches_draw_new_seeded_samples():
    from otzoo.batches import for_pair

    data = load_vector_pair(parse_pair("gauss:4"), seed=0, n_train=32, n_test=8)
    b1 = for_pair(data, batch_size=16, seed=5, device=torch.device("cpu"))
    b2 = for_pair(data, batch_size=16, seed=5, device=torch.device("cpu"))
    first, second = b1.x(), b1.x()
    assert first.shape == (16, 4) and b1.y(3).shape == (3, 4)
    assert not torch.equal(first, second)  # fresh draws, not a fixed set
    assert torch.equal(b2.x(), first)  # but seeded
    assert torch.equal(b1.x_all, data.x_train) and torch.equal(b1.y_all, data.y_train)


def test_fresh_batches_come_in_blocks_whose_state_is_the_rows_served():
    """Blocks are an implementation detail: any split of the draws gives the same rows, a state
    saved mid-block or across a block's end re-draws them exactly, a generator state from a
    checkpoint written before the blocks resumes the per-batch draws it was taking, and any
    other state is refused in one line."""
    from otzoo.batches import BlockSampler, for_pair
    from otzoo.errors import CheckpointError

    data = load_vector_pair(parse_pair("gauss:3"), seed=0, n_train=32, n_test=8)
    known = data.known

    def sampler(block: int) -> BlockSampler:
        return BlockSampler(known.sample_x, known.sample_y, 4, seed=9, block=block)

    straight = sampler(block=5)
    rows = straight.x(12)
    split = sampler(block=5)
    parts = [split.x(3), split.x(), split.x(5)]  # 3 + 4 (the batch size) + 5, across 2 ends
    assert torch.equal(torch.cat(parts), rows)
    assert torch.equal(split.x(2), straight.x(2))  # and on after them
    state = split.state()
    assert state.tolist() == [14, 0]
    after = [split.x(7), split.y(6)]
    split.set_state(state)
    assert torch.equal(split.x(7), after[0]) and torch.equal(split.y(6), after[1])
    assert not torch.equal(rows[:6], after[1][:6])  # x and y are separate streams
    assert isinstance(for_pair(data, 16, seed=5, device=torch.device("cpu")), BlockSampler)
    old = torch.Generator().manual_seed(4)  # the sampler before the blocks: one generator
    old_state = old.get_state()
    expected = known.sample_x(4, old)
    split.set_state(old_state)
    assert torch.equal(split.x(), expected) and torch.equal(split.state(), old.get_state())
    with pytest.raises(CheckpointError, match="neither two row counters nor a generator state"):
        split.set_state(torch.zeros(3, dtype=torch.int64))


@needs_w2
def test_w2_pair_matches_the_benchmark_map():
    data = load_vector_pair(parse_pair("w2:2"), seed=0, weights_dir=W2_DIR, n_train=256, n_test=64)
    assert data.kind == "vector" and data.x_shape == (2,)
    assert data.x_train.shape == (256, 2) and torch.isfinite(data.y_train).all()
    ref = w2_mix3_pair(2, W2_DIR)
    torch.testing.assert_close(data.extras["x_test_true_map"], ref.true_map(data.x_test))
    assert data.known.var_q == pytest.approx(ref.var_q) and data.known.var_q == pytest.approx(
        2.0, rel=0.03
    )


@needs_w2
def test_w2_default_folder_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(W2_ENV, str(W2_DIR))
    assert default_w2_dir() == W2_DIR
    pair = known_map_pair(parse_pair("w2:2"))
    assert pair.dim == 2 and pair.var_q == pytest.approx(2.0, rel=0.03)


def test_w2_missing_weights_is_one_line_error_naming_the_file(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="--weights") as err:
        load_vector_pair(parse_pair("w2:2"), weights_dir=tmp_path, n_train=8, n_test=8)
    assert str(tmp_path / "2_v1.pt") in str(err.value) and "\n" not in str(err.value)
    monkeypatch.setenv(W2_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="2_v1.pt"):
        load_pair("w2:2")


def test_w2_without_a_folder_names_the_variable(monkeypatch):
    monkeypatch.delenv(W2_ENV, raising=False)
    assert default_w2_dir() is None
    with pytest.raises(DataError, match=W2_ENV) as err:
        load_pair("w2:3")
    assert "3_v1.pt" in str(err.value) and "\n" not in str(err.value)
