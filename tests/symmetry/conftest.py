"""Keep the symmetry tests on one thread (the machine is shared with training runs)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_thread(one_thread):
    yield
