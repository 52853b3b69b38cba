"""Typed data statistics: old checkpoints' dicts read and written back unchanged."""

from __future__ import annotations

import pytest
import torch

from crystalflow.checkpoint import load_checkpoint
from crystalflow.crystal_tasks.stats import CrystalStats
from crystalflow.errors import CheckpointError
from crystalflow.flow_checkpoints import BUNDLED_DIR
from crystalflow.manifolds import LatticeChart
from crystalflow.symmetry.analysis import DEFAULT_SYMPREC

CRYSTAL_CHECKPOINTS = sorted(p.name for p in BUNDLED_DIR.glob("*.pt") if not p.name.startswith("protein"))


@pytest.mark.parametrize("name", CRYSTAL_CHECKPOINTS)
def test_bundled_statistics_round_trip(name):
    stats = load_checkpoint(BUNDLED_DIR / name).stats
    typed = CrystalStats.from_dict(stats)
    assert typed.to_dict() == stats
    assert CrystalStats.from_dict(typed.to_dict()) == typed


def test_statistics_of_a_symmetric_training_set():
    class Rows:  # the two things of_dataset reads
        num_atoms = torch.tensor([4, 12, 6])

        def __len__(self) -> int:
            return 3

    chart = LatticeChart.pooled(1.9, 0.2, 0.2, 0.38)
    stats = CrystalStats.of_dataset(Rows(), chart, "toy", symprec=DEFAULT_SYMPREC, elements=(8, 3))
    d = stats.to_dict()
    assert d == {"lattice_chart": chart.state_dict(), "max_atoms": 12, "dataset": "toy", "train_size": 3,
                 "elements": [8, 3], "cell": "conventional", "symprec": DEFAULT_SYMPREC}
    assert stats.with_init("x.pt", {"max_atoms": 20}).max_atoms == 20
    assert stats.with_init("x.pt", {"max_atoms": 5}).to_dict()["init_from"] == "x.pt"
    assert CrystalStats.of_dataset(Rows(), chart, "p1").cell is None  # P1 cells: no symmetry fields
    with pytest.raises(CheckpointError, match="train_size"):
        CrystalStats.from_dict({k: v for k, v in d.items() if k != "train_size"})
