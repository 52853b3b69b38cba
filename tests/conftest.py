"""Test-wide fixtures: the shared benchmark data directory, thread limits and a per-test cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``$CRYSTALFLOW_DATA`` or ``../shared/data`` beside the repository, if present."""
    env = os.environ.get("CRYSTALFLOW_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def one_thread():
    """Torch on one thread for the whole session (for suites that run beside training jobs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("benchmark data not found (set CRYSTALFLOW_DATA)")
    return d


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh ``$CRYSTALFLOW_CACHE`` for one test (parsed datasets are cached there)."""
    monkeypatch.setenv("CRYSTALFLOW_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
