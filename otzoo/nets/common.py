"""Building blocks shared by the backbones: activations, normalisation, 3x3x3 convs, checks.

Kept in one place so every network in otzoo makes the same choices (batch-independent
normalisation, one spelling of each activation) and reports bad arguments the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from otzoo.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "celu": nn.CELU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
}
NORMS = ("group", "none")
# a voxel potential's layout: 3D convolutions (weights shared across the grid) | the flat grid
VOXEL_NETS = ("conv", "dense")


class NetConfigError(ConfigError, ValueError):
    """A backbone got an impossible argument or input; a `ValueError` too, for plain callers."""


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name; unknown names raise with the list of valid ones."""
    if name not in ACTIVATIONS:
        raise NetConfigError(
            f"unknown activation {name!r}; use one of {', '.join(sorted(ACTIVATIONS))}"
        )
    return ACTIVATIONS[name]()


def check_norm(norm: str) -> None:
    """Refuse any normalisation but GroupNorm or none: potentials must not depend on the batch."""
    if norm not in NORMS:
        raise NetConfigError(
            f"unknown norm {norm!r}; use 'group' or 'none' "
            "(BatchNorm would make the output depend on the rest of the batch)"
        )


def _check_ints(values: dict[str, int], minimum: int, wanted: str) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise NetConfigError(f"{name} must be {wanted}, got {value!r}")


def check_positive(**values: int) -> None:
    """Raise on any argument that is not a positive int (names the argument)."""
    _check_ints(values, 1, "a positive int")


def check_count(**values: int) -> None:
    """Raise on any argument that is not an int >= 0 (an optional width: 0 means none)."""
    _check_ints(values, 0, "an int >= 0")


def group_count(channels: int, max_groups: int = 8) -> int:
    """Largest group count <= max_groups that divides `channels` (1 when nothing else does)."""
    for groups in range(min(max_groups, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


def conv_norm_act(
    c_in: int, c_out: int, norm: str, activation: str, stride: int = 1
) -> nn.Sequential:
    """Conv3d k=3 (padding 1) -> GroupNorm or nothing -> activation.

    The conv has no bias when a norm follows: the norm's own shift replaces it.
    """
    layers: list[nn.Module] = [
        nn.Conv3d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=norm == "none")
    ]
    if norm == "group":
        layers.append(nn.GroupNorm(group_count(c_out), c_out))
    layers.append(make_activation(activation))
    return nn.Sequential(*layers)


def check_voxels(x: torch.Tensor, channels: int, owner: str) -> None:
    """Require a [N, channels, D, H, W] tensor, with a message that names the shape seen."""
    if x.dim() != 5 or x.shape[1] != channels:
        raise NetConfigError(
            f"{owner} expects voxels of shape [N, {channels}, D, H, W], got {list(x.shape)}; "
            f"check the channel count the network was built with"
        )


def ema_copy(live: nn.Module) -> nn.Module:
    """A frozen copy of `live` to hold its exponential moving average (see `ema_update`)."""
    return copy.deepcopy(live).requires_grad_(False)


@torch.no_grad()
def ema_update(avg: nn.Module, live: nn.Module, decay: float) -> None:
    """avg <- decay * avg + (1 - decay) * live for parameters; buffers are copied. The map a
    solver transports with when its `ema` key is > 0 (damps the swings of late training)."""
    torch._foreach_lerp_(list(avg.parameters()), list(live.parameters()), 1.0 - decay)
    for a, b in zip(avg.buffers(), live.buffers(), strict=True):
        a.copy_(b)


def zero_output(net: nn.Module) -> nn.Module:
    """Zero a scalar net's output layer (ResNet3D's `out`, MLP's `head`), so it starts as a
    constant: a potential 0.5 ||x||^2 + net(x) then maps by the identity at init, where an
    untrained net's gradient would move every input at random (ENOT on voxels: 1.9 per voxel
    in [-1, 1] data)."""
    inner = net
    while not hasattr(inner, "out") and not hasattr(inner, "head") and hasattr(inner, "net"):
        inner = inner.net  # a wrapper (ColorBlind) around the net with the layer
    last = inner.out if hasattr(inner, "out") else getattr(inner, "head", None)
    if not isinstance(last, nn.Linear):
        raise ConfigError(f"{type(net).__name__} has no linear output layer (out or head) to zero")
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return net


def film_layer(cond_dim: int, channels: int) -> nn.Linear:
    """The generator of one FiLM: cond [N, cond_dim] -> (scale, shift) for `channels` features,
    zero at init, so a net with FiLMs starts as the same net without them."""
    layer = nn.Linear(cond_dim, 2 * channels)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def film(layer: nn.Module, cond: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """FiLM from `cond`: features h [N, C, D, H, W] -> h * (1 + scale) + shift."""
    scale, shift = layer(cond)[:, :, None, None, None].chunk(2, dim=1)
    return lambda h: h * (1 + scale) + shift
