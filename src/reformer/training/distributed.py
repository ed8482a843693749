"""The process group a training run belongs to, from torchrun's environment: one place for rank, size and the few
collectives the pipelines use.

torchrun (`torchrun --standalone --nproc-per-node N -m reformer train ...`, or `--nnodes` with a rendezvous
endpoint for several machines) sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT in each worker;
`init_from_env` joins that group (gloo on CPU, NCCL when the worker has a CUDA device). Without those variables
everything here answers for a single process: rank 0 of 1, collectives that return their input.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = ["backend", "barrier", "broadcast_object", "gather_objects", "init_from_env", "is_distributed", "is_main",
           "launched_by_torchrun", "local_rank", "rank", "shutdown", "world_size"]

_T = TypeVar("_T")


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher setting its variables) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def backend() -> str:
    """NCCL when this worker has a CUDA device, else gloo."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_from_env() -> bool:
    """Join torchrun's process group once (a no-op when already joined or not launched by torchrun); returns
    whether this process is one of several."""
    if not launched_by_torchrun():
        return False
    if not dist.is_initialized():
        if backend() == "nccl":
            torch.cuda.set_device(local_rank())
        dist.init_process_group(backend())
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0: the one process that writes checkpoints, files and progress."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(value: _T) -> _T:
    """Rank 0's `value` on every rank (any picklable object)."""
    if not is_distributed():
        return value
    box: list[Any] = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value: _T) -> list[_T] | None:
    """Every rank's `value`, in rank order, on rank 0 (None on the others)."""
    if not is_distributed():
        return [value]
    out: list[Any] | None = [None] * world_size() if is_main() else None
    dist.gather_object(value, out, dst=0)
    return out


def shutdown() -> None:
    """Leave the process group (at the end of a command, on every rank)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
