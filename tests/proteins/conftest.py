"""Fixtures of the protein tests: a few small real chains from the shared data (skipped without it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crystalflow.models.framenet import FrameNet, FrameNetConfig
from crystalflow.proteins.flow import BackboneFlow, BackboneFlowConfig

torch.set_num_threads(1)

#: small files: a 2-chain receptor, a 2-chain antibody, a chain with breaks, a DIPS chain
REAL_FILES = ("db55_unbound/1A2K_r_u.pdb.gz", "db55_unbound/1AHW_r_u.pdb.gz",
              "db55_unbound/1ZHI_l_u.pdb.gz", "dips_test/kq_1kq1.pdb1_1.dill_l_b_COMPLEX.pdb.gz")


@pytest.fixture(scope="session")
def protein_dir(data_dir: Path) -> Path:
    d = data_dir / "proteins"
    if not d.is_dir():
        pytest.skip("protein data not found")
    return d


@pytest.fixture(scope="session")
def real_files(protein_dir: Path) -> list[Path]:
    return [protein_dir / f for f in REAL_FILES]


@pytest.fixture(params=[False, True], ids=["fixed_frames", "frame_updates"])
def tiny_flow(request) -> BackboneFlow:
    """An untrained small flow (random weights with non-zero output heads), with and without
    frame updates between blocks."""
    torch.manual_seed(0)
    model = FrameNet(FrameNetConfig(hidden=32, pair=16, layers=2, heads=2, head_dim=8,
                                    query_points=2, value_points=2, time_dim=16,
                                    frame_updates=request.param))
    torch.nn.init.normal_(model.head[-1].weight, std=0.1)
    for lin in getattr(model, "updates", []):
        torch.nn.init.normal_(lin.weight, std=0.1)
    return BackboneFlow(model, BackboneFlowConfig(aux_weight=1.0, steps=4))


def rigid_motion(seed: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """A random rotation ``[3, 3]`` and translation ``[3]``."""
    from crystalflow.manifolds.so3 import random_rotations

    g = torch.Generator().manual_seed(seed)
    return random_rotations((), g, dtype), 5 * torch.randn(3, generator=g, dtype=dtype)
