"""Classifier3D judge: logits/features shapes, size budget, eval determinism, can learn."""

import io

import pytest
import torch
import torch.nn.functional as F

from otzoo.nets import Classifier3D, count_parameters


def _voxels(n: int, c: int, grid: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, grid, grid, grid, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("grid", [8, 16])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_finite(grid, channels):
    torch.manual_seed(0)
    net = Classifier3D(channels, n_classes=4, base=4, feature_dim=12).eval()
    x = _voxels(3, channels, grid)
    feats, logits = net.features(x), net(x)
    assert feats.shape == (3, 12) and logits.shape == (3, 4)
    assert torch.isfinite(feats).all() and torch.isfinite(logits).all()
    assert (feats >= 0).all()  # after the ReLU


def test_default_size_is_small():
    assert 50_000 <= count_parameters(Classifier3D(3)) <= 300_000


def test_logits_are_head_of_features_and_batch_independent_in_eval():
    torch.manual_seed(0)
    net = Classifier3D(3, base=4, feature_dim=16).eval()
    x = _voxels(4, 3, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net.head(net.features(x)))
        torch.testing.assert_close(net(x[:1]), net(x)[:1], atol=1e-6, rtol=0)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = Classifier3D(3, n_classes=3, base=4, feature_dim=8).train()
    F.cross_entropy(net(_voxels(4, 3, 8)), torch.tensor([0, 1, 2, 0])).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_learns_a_separable_toy_task():
    """Two classes: a bright cube in the left or right half of an 8^3 grid."""
    torch.manual_seed(0)
    x = -torch.ones(32, 1, 8, 8, 8)
    y = torch.arange(32) % 2
    x[y == 0, :, 2:6, 2:6, 0:3] = 1.0
    x[y == 1, :, 2:6, 2:6, 5:8] = 1.0
    x += 0.3 * torch.randn_like(x)
    net = Classifier3D(1, n_classes=2, base=4, feature_dim=8)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        assert (net(x).argmax(1) == y).float().mean() == 1.0


def test_state_dict_round_trip_keeps_batchnorm_statistics():
    torch.manual_seed(0)
    net = Classifier3D(3, base=4, feature_dim=8).train()
    net(_voxels(4, 3, 8, seed=5) * 3 + 1)  # moves the BatchNorm running statistics
    net.eval()
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    copy = Classifier3D(3, base=4, feature_dim=8).eval()
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    x = _voxels(2, 3, 8)
    with torch.no_grad():
        assert torch.equal(copy(x), net(x))
        assert torch.equal(copy.features(x), net.features(x))


def test_wrong_channels_raise():
    with pytest.raises(ValueError, match="Classifier3D expects voxels"):
        Classifier3D(3, base=4)(_voxels(1, 1, 8))
