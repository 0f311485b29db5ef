"""Data-parallel training under `torchrun`, for any solver, without the solver knowing.

Every rank builds the same solver from the same seed; rank 0's weights are broadcast once; a
hook on every parameter averages its gradient across ranks as soon as backward has accumulated
it. Since every rank runs the same `step` code on its own batches, all optimizers see the same
averaged gradients and the weights stay identical. Backend: NCCL on CUDA, gloo on CPU.
Rank 0 alone writes logs, pictures, metrics and checkpoints.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

from otzoo.solver import Solver


def world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) when not launched by it."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return world()[0] == 0


def local_cuda_device() -> torch.device:
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def init(device: torch.device) -> bool:
    """Join the process group when launched by torchrun; returns whether training is distributed."""
    _, size = world()
    if size <= 1:
        return False
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def share_weights(solver: Solver) -> None:
    """Broadcast rank 0's parameters and buffers, then average every gradient across ranks."""
    size = dist.get_world_size()
    for module in solver.modules.values():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)
        for p in module.parameters():
            if p.requires_grad:
                p.register_post_accumulate_grad_hook(_averager(size))


def _averager(size: int) -> Any:
    def hook(p: torch.Tensor) -> None:
        dist.all_reduce(p.grad)
        p.grad.div_(size)

    return hook


def gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (all ranks must call it)."""
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
