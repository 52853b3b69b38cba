"""A process-pool ``map`` with a progress bar, shared by the metrics that loop over structures.

Workers are started with the ``spawn`` method (safe next to torch's thread pools), run single
threaded (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``) and silence pymatgen's CIF and
featuriser warnings. With ``workers <= 1`` everything runs in the calling process.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Sequence, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["parallel_map", "resolve_workers"]


def resolve_workers(workers: int | None) -> int:
    """Number of worker processes: ``None`` or ``0`` means all CPUs, negative means 1."""
    if not workers:
        return max(1, os.cpu_count() or 1)
    return max(1, int(workers))


def _init_worker() -> None:
    """Single-threaded numerics and quiet warnings inside a worker process."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    warnings.filterwarnings("ignore")
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:  # torch is optional for most metrics
        pass


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T] | Iterable[T],
    *,
    workers: int = 1,
    progress: bool = True,
    desc: str | None = None,
    chunksize: int | None = None,
) -> list[R]:
    """``[fn(x) for x in items]``, in order, optionally over a process pool, with a progress bar.

    Args:
        fn: a picklable (module-level) function.
        items: its arguments.
        workers: number of processes; ``<= 1`` runs serially in this process.
        progress: show a tqdm progress bar.
        desc: label of the progress bar.
        chunksize: items sent to a worker at a time (default: about 16 chunks per worker).

    Returns:
        The results in the order of ``items``.
    """
    items = list(items)
    if not items:
        return []
    if workers <= 1 or len(items) == 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [fn(x) for x in tqdm(items, desc=desc, disable=not progress, leave=False)]
    workers = min(workers, len(items))
    if chunksize is None:
        chunksize = max(1, len(items) // (workers * 16))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
        results = pool.map(fn, items, chunksize=chunksize)
        return list(tqdm(results, total=len(items), desc=desc, disable=not progress, leave=False))
