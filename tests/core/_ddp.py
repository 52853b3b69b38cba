"""Helpers of the data-parallel tests: spawn gloo workers on localhost and join their group."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Callable

import torch
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port free on localhost now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_workers(worker: Callable[[int, int, int, str], None], tmp: Path, world: int = 2) -> Path:
    """Run ``worker(rank, world, port, tmp)`` in ``world`` spawned processes; return ``tmp``."""
    mp.spawn(worker, args=(world, free_port(), str(tmp)), nprocs=world, join=True)
    return tmp


def join_group(rank: int, world: int, port: int):
    """In a spawned worker: the launcher's environment (as torchrun sets it), one CPU thread,
    and the gloo process group; returns :class:`crystalflow.distributed.DistInfo`."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from crystalflow import distributed

    info = distributed.setup("cpu")
    assert info.distributed and info.rank == rank and info.world_size == world
    return info
