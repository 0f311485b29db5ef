"""Training batches: the one sampler behind the `Batches` protocol (otzoo.solver).

A solver's `step` asks for batches with `x(n)` / `y(n)`; every draw comes from one seeded
generator whose state goes into checkpoints (fresh known-map samples: from seeded blocks, and
the state is the rows served), so a resumed run draws exactly what an uninterrupted one would.
Where the batches come from is a pair of draw functions `draw(n, generator) -> Tensor`: random
rows of fixed training tensors (digit pairs), or fresh samples of a known distribution (the W2
benchmark and Gaussian pairs, as in the benchmark papers), and for rotated or point-cloud digits
a new random transform of a random training digit at every draw (`PairData.fresh`). `x_all` /
`y_all` are the fixed training sets, for solvers that fit once (discrete OT).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from otzoo.data import PairData
from otzoo.data.pairs import stream_generator
from otzoo.data.vectors import VectorPairData
from otzoo.errors import CheckpointError
from otzoo.runtime import to_device

Draw = Callable[[int, torch.Generator], torch.Tensor]
FRESH_STREAM = 24  # the stream of fresh known-map samples (apart from the data streams)
# Fresh known-map samples are drawn this many at a time: the W2 benchmark's map (the gradient of
# two ICNNs) costs 1.3 ms per 256 rows in bulk against 2.2 ms in a batch of 256 (dims 2 / 4).
BLOCK_ROWS = 8192


class BatchSampler:
    """Seeded training batches: `x(n)`, `y(n)` (n defaults to `batch_size`), `x_all`, `y_all`,
    and the generator state for checkpoints (`state()` / `set_state()`)."""

    def __init__(
        self,
        draw_x: Draw,
        draw_y: Draw,
        batch_size: int,
        generator: torch.Generator,
        x_all: torch.Tensor | None = None,
        y_all: torch.Tensor | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.draw_x, self.draw_y = draw_x, draw_y
        self.batch_size = batch_size
        self.generator = generator
        self.x_all, self.y_all = x_all, y_all
        self.device = device

    def _take(self, draw: Draw, n: int | None) -> torch.Tensor:
        out = draw(n or self.batch_size, self.generator)
        return out if self.device is None else out.to(self.device)

    def x(self, n: int | None = None) -> torch.Tensor:
        return self._take(self.draw_x, n)

    def y(self, n: int | None = None) -> torch.Tensor:
        return self._take(self.draw_y, n)

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


class BlockSampler(BatchSampler):
    """Fresh samples of a known distribution, served from blocks of `block` rows per side.
    Block k of a side comes from its own generator (seed, side, k), so the state is just the
    rows each side has served: a resumed run, or a solver re-reading its draws from a saved
    state (otcfm's plan), gets exactly the rows an uninterrupted one would. A run checkpointed
    before the blocks (its state a generator's) resumes on per-batch draws from that state."""

    def __init__(
        self,
        draw_x: Draw,
        draw_y: Draw,
        batch_size: int,
        seed: int,
        x_all: torch.Tensor | None = None,
        y_all: torch.Tensor | None = None,
        device: torch.device | None = None,
        block: int = BLOCK_ROWS,
    ) -> None:
        super().__init__(draw_x, draw_y, batch_size, torch.Generator(), x_all, y_all, device)
        self.seed, self.block = seed, block
        self.rows = [0, 0]  # rows served: x, y
        self._cached: list[tuple[int, torch.Tensor] | None] = [None, None]
        self.per_batch = False  # an older checkpoint's generator state: BatchSampler's draws

    def _block(self, side: int, k: int) -> torch.Tensor:
        cached = self._cached[side]
        if cached is None or cached[0] != k:
            gen = stream_generator(self.seed, FRESH_STREAM, side, k)
            rows = (self.draw_x, self.draw_y)[side](self.block, gen)
            cached = (k, rows if self.device is None else rows.to(self.device))  # once a block
            self._cached[side] = cached
        return cached[1]

    def _serve(self, side: int, n: int | None) -> torch.Tensor:
        start, n = self.rows[side], n or self.batch_size
        self.rows[side] += n
        parts = []
        while n > 0:
            k, offset = divmod(start, self.block)
            take = min(n, self.block - offset)
            parts.append(self._block(side, k)[offset : offset + take])
            start, n = start + take, n - take
        return torch.cat(parts)  # a copy: no caller holds a view of the cached block

    def x(self, n: int | None = None) -> torch.Tensor:
        return super().x(n) if self.per_batch else self._serve(0, n)

    def y(self, n: int | None = None) -> torch.Tensor:
        return super().y(n) if self.per_batch else self._serve(1, n)

    def state(self) -> torch.Tensor:
        if self.per_batch:
            return super().state()
        return torch.tensor(self.rows, dtype=torch.int64)

    def set_state(self, state: torch.Tensor) -> None:
        if state.dtype == torch.uint8:  # a generator's state: a run from before the blocks
            super().set_state(state)
            self.per_batch = True
        elif state.dtype == torch.int64 and state.shape == (2,):
            self.rows, self.per_batch = [int(v) for v in state], False
        else:
            raise CheckpointError(
                f"the checkpoint's batch state is a {state.dtype} tensor of shape "
                f"{list(state.shape)}, neither two row counters nor a generator state; "
                "resume from a checkpoint otzoo wrote, or start the run afresh"
            )


def rows_of(data: torch.Tensor) -> Draw:
    """Draw n random rows (with replacement) of `data`, which may live on a GPU."""

    def draw(n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(data), (n,), generator=generator)
        return data[idx.to(data.device)]

    return draw


def from_draws(draw_x: Draw, draw_y: Draw, batch_size: int, seed: int) -> BatchSampler:
    """Batches from two draw functions, one generator seeded with `seed` (tests, scripts)."""
    return BatchSampler(draw_x, draw_y, batch_size, torch.Generator().manual_seed(seed))


def from_tensors(
    x_all: torch.Tensor, y_all: torch.Tensor, batch_size: int, seed: int
) -> BatchSampler:
    """Random rows of fixed training sets (kept wherever they are, e.g. on the GPU)."""
    gen = torch.Generator().manual_seed(seed)
    return BatchSampler(rows_of(x_all), rows_of(y_all), batch_size, gen, x_all, y_all)


def for_pair(data: PairData, batch_size: int, seed: int, device: torch.device) -> BatchSampler:
    """The training batches of a pair: fresh samples of P and Q for a known-map pair (infinite
    data, as in the W2 benchmark papers), freshly transformed digits for rotated or point-cloud
    data, else random rows of its training sets; tensors move to `device` once (no per-step
    host transfer)."""
    x_all, y_all = to_device(data.x_train, device), to_device(data.y_train, device)
    if data.fresh is not None:
        fx, fy = (side.to(device) for side in data.fresh)
        gen = torch.Generator().manual_seed(seed)
        return BatchSampler(fx, fy, batch_size, gen, x_all, y_all, device)
    if isinstance(data, VectorPairData) and data.known is not None:
        known = data.known
        return BlockSampler(known.sample_x, known.sample_y, batch_size, seed, x_all, y_all, device)
    return from_tensors(x_all, y_all, batch_size, seed)
