"""otzoo: a pluggable zoo of neural optimal transport solvers for 3D data."""

__version__ = "0.1.0"
