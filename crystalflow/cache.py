"""The on-disk cache: its directory and the content digest that keys entries on source files.

One place for both, used by the crystal datasets, the protein datasets and the metrics' reference
arrays. Keys follow a file's bytes, not its path or timestamp, so a copied or re-stamped benchmark
file reuses its processed tensors.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Callable, TypeVar

__all__ = ["cache_dir", "file_sha256", "read_cache", "read_torch_cache"]

T = TypeVar("T")


def cache_dir() -> Path:
    """``$CRYSTALFLOW_CACHE`` or ``~/.cache/crystalflow`` (created)."""
    path = Path(os.environ.get("CRYSTALFLOW_CACHE") or Path.home() / ".cache" / "crystalflow")
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_cache(path: Path, read: Callable[[Path], T]) -> T | None:
    """``read(path)`` for a cache entry; ``None`` when there is none or it is unreadable.

    A corrupt entry (truncated file, wrong content, missing fields: anything ``read`` raises) is
    removed with a warning naming its path, so the caller rebuilds it instead of failing on every
    run until someone deletes it by hand.
    """
    if not path.is_file():
        return None
    try:
        return read(path)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        warnings.warn(f"cache file {path} is unreadable ({reason}); rebuilding it", stacklevel=2)
        path.unlink(missing_ok=True)
        return None


def read_torch_cache(path: Path, build: Callable[[dict], T]) -> T | None:
    """:func:`read_cache` of a ``torch.save``'d dict (weights-only load) turned into ``build(blob)``."""

    def read(p: Path) -> T:
        import torch

        return build(torch.load(p, weights_only=True))

    return read_cache(path, read)
