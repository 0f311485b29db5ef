"""The one set of backbones every otzoo solver draws its networks from.

UNet3D (voxel map), Generator3D (latent -> voxels), ResNet3D (voxel potential), MLP (vector map /
potential; with a PatchEmbed in front, a dense voxel potential on 2^3 patches) and Classifier3D
(the judge). All work on CPU and CUDA unchanged and on any voxel grid and channel count.
"""

from torch import nn

from otzoo.nets.classifier import Classifier3D
from otzoo.nets.common import NetConfigError
from otzoo.nets.generator import Generator3D
from otzoo.nets.mlp import MLP, PatchEmbed
from otzoo.nets.resnet3d import ResNet3D
from otzoo.nets.unet3d import UNet3D


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable and frozen; shared ones counted once)."""
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "MLP",
    "Classifier3D",
    "Generator3D",
    "NetConfigError",
    "PatchEmbed",
    "ResNet3D",
    "UNet3D",
    "count_parameters",
]
