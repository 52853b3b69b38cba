"""On-disk cache of per-reference-file arrays (fingerprints, properties) under one directory.

The directory is ``$CRYSTALFLOW_CACHE`` or ``~/.cache/crystalflow``. Entries are ``.npz`` files
named by a hash of everything they depend on and written atomically, so a crash never leaves a
half-written entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from crystalflow.cache import cache_dir, file_sha256, read_cache

__all__ = ["cache_dir", "cached_arrays", "file_sha256"]


def cached_arrays(
    kind: str, key: dict[str, Any], compute: Callable[[], dict[str, np.ndarray]], *, enabled: bool = True
) -> dict[str, np.ndarray]:
    """Arrays stored under ``<cache>/<kind>-<hash(key)>.npz``, computed by ``compute`` when absent."""
    if not enabled:
        return compute()
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache_dir() / f"{kind}-{digest}.npz"
    def read(p: Path) -> dict[str, np.ndarray]:
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    cached = read_cache(path, read)
    if cached is not None:
        return cached
    arrays = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return arrays
