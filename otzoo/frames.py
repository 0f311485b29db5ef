"""The principal-axes frame (`--set frame=pca`): a map that works in each input's own orientation.

On rotated digits a solver must learn the same map at every orientation from samples that show
each orientation rarely. Turned to its principal axes, every digit lies about the same way up,
so the solver learns one map T0 between the turned samples (threes and fives alike), and each
input's output is turned back: T(x) = R(x)^T T0(R(x) x), where R(x) turns x's principal axes
onto the grid's axes. Such a map commutes with the data's rotations by construction (up to
resampling: R(Qx) = R(x) Q^T for a rotation Q, because the axes turn with the digit), which is
what the data's symmetry asks of an OT map between rotation-invariant distributions.

R(x) comes from the mass moments of the brightness (the brightest channel, so color plays no
part): about the depth axis for `--rotation z` (the long in-plane axis to the height axis), all
three axes for `--rotation 3d` (long axis to height, middle to width, short to depth); the sign
of each axis makes the third moment along it positive (a digit's top-heavy or bottom-heavy
side), the last one's sign keeps R proper. Turns resample slice by slice bicubically (a 3D turn as
three plane turns); the background stays -1.
"""

from __future__ import annotations

from typing import Any

import torch

from otzoo.data.transforms import rotate_slices, z_rotation_matrices
from otzoo.errors import ConfigError
from otzoo.solver import Batches, Solver

FRAMES = ("none", "pca")
_ROTATIONS = ("z", "3d")


def _brightness(x: torch.Tensor) -> torch.Tensor:
    """[N, C, D, H, W] in [-1, 1] -> [N, D, H, W] in [0, 1]: the brightest channel."""
    return ((x.float() + 1.0) / 2.0).amax(dim=1).clamp(0.0, 1.0)


def _offsets(shape: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """[D, H, W, 3] voxel-centre offsets from the grid centre as (x=W, y=H, z=D)."""
    d, h, w = shape
    axes = [torch.arange(k, device=device, dtype=torch.float32) - (k - 1) / 2 for k in (d, h, w)]
    zz, yy, xx = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([xx, yy, zz], dim=-1)


def _signs(b: torch.Tensor, p: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """+-1 per sample and axis [N, K]: the sign that makes the third moment along each of `axes`
    [N, 3, K] positive (p: [N, V, 3] offsets from the centroid, b: [N, V] weights)."""
    third = (b[:, :, None] * (p @ axes) ** 3).sum(dim=1)
    return torch.where(third < 0, -1.0, 1.0)


def principal_frames(x: torch.Tensor, rotation: str) -> torch.Tensor:
    """Rotations [N, 3, 3] that turn each volume's principal axes onto the grid's (module doc):
    about the depth axis for "z", any proper rotation for "3d"."""
    if rotation not in _ROTATIONS:
        raise ValueError(f"principal frames need rotation z or 3d, not {rotation!r}")
    b = _brightness(x).flatten(1)  # [N, V]
    p = _offsets(tuple(x.shape[2:]), x.device).reshape(1, -1, 3)  # [1, V, 3]
    mass = b.sum(dim=1).clamp(min=1e-6)
    p = p - (b[:, :, None] * p).sum(dim=1, keepdim=True) / mass[:, None, None]  # [N, V, 3]
    if rotation == "z":
        q = p[..., :2]
        cov = (b[:, :, None, None] * q[..., :, None] * q[..., None, :]).sum(dim=1)
        cov = cov / mass[:, None, None]
        major = 0.5 * torch.atan2(2 * cov[:, 0, 1], cov[:, 0, 0] - cov[:, 1, 1])  # from x
        angle = torch.pi / 2 - major  # turns the long axis onto y
        axis = torch.stack([torch.sin(angle), torch.cos(angle), torch.zeros_like(angle)], dim=1)
        angle = torch.where(_signs(b, p, axis[:, :, None])[:, 0] < 0, angle + torch.pi, angle)
        return z_rotation_matrices(torch.rad2deg(angle))
    cov = (b[:, :, None, None] * p[..., :, None] * p[..., None, :]).sum(dim=1)
    _, vecs = torch.linalg.eigh(cov / mass[:, None, None])  # columns, ascending eigenvalues
    short, middle, long = vecs[:, :, 0], vecs[:, :, 1], vecs[:, :, 2]
    signs = _signs(b, p, torch.stack([middle, long], dim=2))
    rows = torch.stack([middle * signs[:, :1], long * signs[:, 1:], short], dim=1)
    rows[:, 2] *= torch.where(torch.linalg.det(rows) < 0, -1.0, 1.0)[:, None]
    return rows


def _plane_turns(angle: torch.Tensor) -> torch.Tensor:
    """[N] radians -> [N, 2, 2] counter-clockwise turns of a plane's (column, row) offsets."""
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], dim=-1), torch.stack([s, c], dim=-1)], dim=-2)


def _zyz(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Euler angles (a, b, c) with R = Rz(a) Ry(b) Rz(c) for rotations [N, 3, 3]."""
    b = torch.arccos(frames[:, 2, 2].clamp(-1.0, 1.0))
    a = torch.atan2(frames[:, 1, 2], frames[:, 0, 2])
    c = torch.atan2(frames[:, 2, 1], -frames[:, 2, 0])
    flat = torch.sin(b).abs() < 1e-6  # b = 0 or pi: only a + c or a - c counts
    a = torch.where(flat, torch.atan2(-frames[:, 0, 1], frames[:, 0, 0] * frames[:, 2, 2]), a)
    return a, b, torch.where(flat, torch.zeros_like(c), c)


def turn(x: torch.Tensor, frames: torch.Tensor, rotation: str) -> torch.Tensor:
    """Volumes [N, C, D, H, W] in [-1, 1] turned by `frames` [N, 3, 3] (transpose them to turn
    back), the background staying -1 and values unclamped. A 3D turn is three plane turns
    (Rz Ry Rz), each bicubic slice by slice: real 3D-rotated fives turned to their axes and back
    keep 0.85 of their 0.88 under the judge (seed 0), where one trilinear turn each way keeps
    0.64."""
    with torch.autocast(x.device.type, enabled=False):
        v = x.float() + 1.0  # zero fill is the background
        if rotation == "z":
            v = rotate_slices(v, frames[:, :2, :2])
        else:
            a, b, c = _zyz(frames.float())
            v = rotate_slices(v, _plane_turns(c))
            v = rotate_slices(v, _plane_turns(-b), "DW")  # Ry(b) on (x, z)
            v = rotate_slices(v, _plane_turns(a))
    return (v - 1.0).to(x.dtype)


def to_frame(x: torch.Tensor, rotation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """x turned to its principal axes, and the frames that did it."""
    with torch.autocast(x.device.type, enabled=False):
        frames = principal_frames(x, rotation)
    return turn(x, frames, rotation), frames


class FramedBatches:
    """A solver's batches with every draw turned to its principal axes (`Batches`)."""

    def __init__(self, inner: Batches, rotation: str) -> None:
        self.inner, self.rotation = inner, rotation

    @property
    def batch_size(self) -> int:
        return self.inner.batch_size

    def _turned(self, data: torch.Tensor) -> torch.Tensor:
        """A fixed set turned in chunks (the discrete solvers read it once, in their fit)."""
        chunks = [data[i : i + 256] for i in range(0, len(data), 256)]
        return torch.cat([to_frame(c, self.rotation)[0] for c in chunks])

    @property
    def x_all(self) -> torch.Tensor:
        return self._turned(self.inner.x_all)

    @property
    def y_all(self) -> torch.Tensor:
        return self._turned(self.inner.y_all)

    def x(self, n: int | None = None) -> torch.Tensor:
        return to_frame(self.inner.x(n), self.rotation)[0]

    def y(self, n: int | None = None) -> torch.Tensor:
        return to_frame(self.inner.y(n), self.rotation)[0]

    def state(self) -> torch.Tensor:
        return self.inner.state()

    def set_state(self, state: torch.Tensor) -> None:
        self.inner.set_state(state)


class FramedSolver(Solver):
    """`inner`'s map in each input's principal-axes frame: T(x) = R(x)^T T0(R(x) x). It shares
    inner's networks, optimizers and steps (checkpoints are inner's: a framed run's networks are
    the same solver's), and only turns what goes in and out of `step` and `transport`."""

    def __init__(self, inner: Solver, rotation: str) -> None:
        super().__init__(inner.config, inner.info, inner.device)
        self.inner, self.rotation = inner, rotation
        self.id, self.summary, self.tags = inner.id, inner.summary, inner.tags
        self.amp_safe, self.equal_shapes = inner.amp_safe, inner.equal_shapes
        self.modules, self.optimizers = inner.modules, inner.optimizers

    @property  # type: ignore[override]
    def steps_done(self) -> int:
        return self.inner.steps_done

    @steps_done.setter
    def steps_done(self, value: int) -> None:
        if "inner" in self.__dict__:  # Solver.__init__ sets 0 before inner is there
            self.inner.steps_done = value

    @property  # type: ignore[override]
    def warm_started(self) -> bool:
        return "inner" in self.__dict__ and self.inner.warm_started

    @warm_started.setter
    def warm_started(self, value: bool) -> None:
        if "inner" in self.__dict__:
            self.inner.warm_started = value

    def step(self, batches: Batches) -> dict[str, float]:
        return self.inner.step(FramedBatches(batches, self.rotation))

    def transport(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        turned, frames = to_frame(x, self.rotation)
        return turn(self.inner.transport(turned, z), frames.transpose(1, 2), self.rotation)

    def diagnostics(self, x: torch.Tensor) -> dict[str, float]:
        return self.inner.diagnostics(to_frame(x, self.rotation)[0])

    def train_mode(self, on: bool = True) -> None:
        self.inner.train_mode(on)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)

    def extra_state(self) -> dict[str, Any]:
        return self.inner.extra_state()

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.inner.load_extra_state(state)


def check_frame(frame: str, rotation: str, pair_kind: str) -> None:
    """Refuse `frame=pca` where it has no meaning: unrotated data, other pairs than digits."""
    if frame != "none" and (rotation not in _ROTATIONS or pair_kind != "digits"):
        raise ConfigError(
            f"frame={frame}: the principal-axes frame turns rotated digits; use it with a digit "
            "pair and --rotation z or 3d, or drop --set frame"
        )
