"""The on-disk cache: its directory and the content digest that keys entries on source files.

One place for both, used by the crystal datasets, the protein datasets and the metrics' reference
arrays. Keys follow a file's bytes, not its path or timestamp, so a copied or re-stamped benchmark
file reuses its processed tensors.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["cache_dir", "file_sha256"]


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
