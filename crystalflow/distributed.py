"""torch.distributed set-up for data-parallel training (``torchrun ... -m crystalflow train``).

One place for: reading the launcher's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``),
starting the process group (gloo on CPU, nccl on CUDA), the device of each process, splitting a
global batch between processes, wrapping a model in ``DistributedDataParallel`` and a few
collectives the training loop needs. Without a launcher (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``)
everything degrades to a single process and no process group is created.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence

import torch
import torch.distributed as dist

#: how long a collective may wait for the other processes (rank 0 validates while others wait)
TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank (0 .. world_size-1); local_rank: rank on this machine;
        world_size: number of processes; device: the device this process computes on.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        """True when a process group with more than one process is running."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that checkpoints, logs and validates."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when the environment describes more than one process (torchrun sets ``WORLD_SIZE``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str | torch.device | None = None) -> DistInfo:
    """Start the process group if launched with several processes; return this process's place.

    Args:
        device: ``None`` picks ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU.

    The backend follows the device: nccl for CUDA, gloo otherwise. Calling it again after the
    group exists returns the same information.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if device is None:
        dev = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device(f"cuda:{local}")
    if world <= 1:
        return DistInfo(device=dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank,
                                world_size=world, timeout=TIMEOUT)
    return DistInfo(rank=rank, local_rank=local, world_size=world, device=dev)


def group_started() -> bool:
    """True when a process group exists already (started by a caller or an earlier :func:`setup`)."""
    return dist.is_available() and dist.is_initialized()


def cleanup() -> None:
    """Destroy the process group (if any). Unreferenced ``DistributedDataParallel`` wrappers
    (e.g. kept alive only by closures of a finished training loop) are collected first: a gloo
    group's destructor run after the group was destroyed can deadlock."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op in a single process)."""
    if info.distributed:
        dist.barrier()


def shard(indices: Sequence[int], info: DistInfo) -> list[int]:
    """This process's contiguous part of a global batch (sizes differ by at most one).

    Every process derives the same global batch from (seed, step), so the union of the shards
    is exactly the batch a single process would train on.
    """
    n, w, r = len(indices), info.world_size, info.rank
    lo = r * (n // w) + min(r, n % w)
    hi = lo + n // w + (1 if r < n % w else 0)
    return list(indices[lo:hi])


def wrap(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` under a process group, else the model itself.

    Parameters and buffers are copied from rank 0 when wrapping; buffers are not synchronised
    on every forward: only rank 0 validates, and a collective issued by one process alone
    would hang.
    """
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    import inspect

    ids = [info.device.index] if info.device.type == "cuda" else None
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in params
               else {"broadcast_buffers": False})  # the older name
    return DistributedDataParallel(model, device_ids=ids, **no_sync)


def mean_across(value: float, info: DistInfo) -> float:
    """The average of a float over all processes (the value itself in a single process)."""
    if not info.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t) / info.world_size


def any_across(flag: bool, info: DistInfo) -> bool:
    """True on every process if ``flag`` is true on any (a shared stop decision)."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every process's ``obj``, in rank order, on every process (``[obj]`` in a single process)."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out
