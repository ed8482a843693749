"""Data-parallel training: what `fit` does differently when torchrun started it as one of several processes.

Every rank draws the same shuffled window order from the same seed and takes its slice of each global batch
(`shard`), so the windows of every optimizer step are exactly those of the single-process run's step. Each rank's
loss (a mean over its slice) is scaled by `world * n_rank / n_batch`: DistributedDataParallel averages the
gradients over the ranks, which then gives the gradient of the mean over the whole global batch, uneven last
batches included. Validation, early stopping and every file are rank 0's (`on_main` hands its answer to the
others).

    reformer train --nproc 2 --csv klines.csv --out runs/t                  # one machine
    torchrun --standalone --nproc-per-node 2 -m reformer train --csv ...    # the same, by hand
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from reformer.training import distributed

__all__ = [
    "TEST_EXIT_ENV",
    "Group",
    "Shard",
    "exit_for_test",
    "on_main",
    "process_group",
    "restarted",
    "run_local",
    "shard",
    "sum_over_ranks",
    "wrap",
]

_T = TypeVar("_T")

TEST_EXIT_ENV = "REFORMER_TEST_EXIT_AT_STEP"
"""A test hook: rank 1 of a torchrun job's first attempt exits (status 1) before this global step."""


@dataclass(frozen=True)
class Shard:
    """This rank's part of a global batch."""

    indices: torch.Tensor
    """Window positions this rank runs (one, weighted 0, when the batch has fewer windows than ranks)."""
    weight: float
    """Factor on the rank's mean loss: `world * n_rank / n_batch` (1 in one process)."""
    count: int
    """Windows this rank contributes to the global batch (0 for the stand-in above)."""


def shard(global_batch: torch.Tensor) -> Shard:
    """This rank's contiguous slice of `global_batch` (`torch.tensor_split`: sizes differ by at most one)."""
    world = distributed.world_size()
    if world == 1:
        return Shard(global_batch, 1.0, len(global_batch))
    part = torch.tensor_split(global_batch, world)[distributed.rank()]
    if len(part) == 0:
        # DDP needs a backward on every rank for its gradient all-reduce: a stand-in window that adds nothing
        return Shard(global_batch[:1], 0.0, 0)
    return Shard(part, world * len(part) / len(global_batch), len(part))


def wrap(model: nn.Module, enabled: bool) -> nn.Module:
    """`model` under DistributedDataParallel when `enabled` and this process is one of several, else itself.
    DDP's constructor copies rank 0's weights to the others."""
    if not (enabled and distributed.is_distributed()):
        return model
    device = next(model.parameters()).device
    ids = [device.index if device.index is not None else distributed.local_rank()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def sum_over_ranks(*values: float) -> tuple[float, ...]:
    """Each value summed over the ranks (float64; unchanged in one process)."""
    if not distributed.is_distributed():
        return values
    # gloo reduces CPU tensors only; NCCL needs them on the rank's device
    device = torch.device("cuda", torch.cuda.current_device()) if distributed.backend() == "nccl" else "cpu"
    totals = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(totals)
    return tuple(float(v) for v in totals.cpu())


def on_main(compute: Callable[[], _T], enabled: bool = True) -> _T:
    """`compute()` run on rank 0 only and its answer handed to every rank (when `enabled`; else run here)."""
    if not (enabled and distributed.is_distributed()):
        return compute()
    return distributed.broadcast_object(compute() if distributed.is_main() else None)  # type: ignore[return-value]


def restarted() -> bool:
    """Whether torchrun restarted this job after a worker failed (`--max-restarts`)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0


def exit_for_test(step: int) -> None:
    """The `TEST_EXIT_ENV` hook: a worker lost mid-epoch, for the restart test."""
    at = os.environ.get(TEST_EXIT_ENV)
    if at is not None and int(at) == step and distributed.rank() == 1 and not restarted():
        os._exit(1)


@dataclass
class Group:
    """What `process_group` joined."""

    joined: bool
    main: bool


@contextmanager
def process_group() -> Iterator[Group]:
    """Join torchrun's process group for the block (nothing without torchrun) and leave it after; yields whether
    this process is rank 0, the one that reports."""
    joined = _join_after_restart() if restarted() else distributed.init_from_env()
    group = Group(joined, distributed.is_main())
    try:
        yield group
        distributed.barrier()  # every rank done before any leaves: no rank's teardown meets a peer's pending work
    finally:
        if joined:
            distributed.shutdown()


def _join_after_restart() -> bool:
    """`distributed.init_from_env` for a restarted job. torchrun's agent keeps one store across attempts, and
    gloo would read the failed attempt's peer addresses from it and time out connecting: each attempt gets its
    own key prefix."""
    if not distributed.launched_by_torchrun() or dist.is_initialized() or \
            os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return distributed.init_from_env()
    if distributed.backend() == "nccl":
        torch.cuda.set_device(distributed.local_rank())
    world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    agent_store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world, is_master=False)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    dist.init_process_group(distributed.backend(), store=dist.PrefixStore(f"reformer/attempt{attempt}", agent_store),
                            rank=rank, world_size=world)
    return True


def run_local(nproc: int, module_args: Sequence[str]) -> int:
    """`torchrun --standalone --nproc-per-node nproc -m reformer <module_args>` as a child process; its status.
    One intra-op thread per worker unless OMP_NUM_THREADS says otherwise (torchrun's own default, said aloud)."""
    env = {**os.environ}
    env.setdefault("OMP_NUM_THREADS", "1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               "-m", "reformer", *module_args]
    return subprocess.run(command, env=env, check=False).returncode
