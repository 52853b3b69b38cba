"""Typed protein checkpoint statistics: the bundled checkpoint's dict read and written back unchanged."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from crystalflow.checkpoint import load_checkpoint, save_checkpoint
from crystalflow.errors import CheckpointError
from crystalflow.flow_checkpoints import BUNDLED_DIR
from crystalflow.proteins.stats import ProteinStats

BUNDLED = BUNDLED_DIR / "protein_db55.pt"


def test_bundled_statistics_round_trip_byte_for_byte(tmp_path):
    ck = load_checkpoint(BUNDLED)
    typed = ProteinStats.from_dict(ck.stats)
    assert typed.dataset == "db55_unbound" and typed.init_from == "protein_db55.pt"
    again = typed.to_dict()
    assert list(again.items()) == list(ck.stats.items())  # same keys, order and values
    assert [type(v) for v in again.values()] == [type(v) for v in ck.stats.values()]
    assert ProteinStats.from_dict(again) == typed
    for folder, stats in (("a", ck.stats), ("b", again)):  # same file name: torch.save records it
        (tmp_path / folder).mkdir()
        save_checkpoint(dataclasses.replace(ck, stats=stats), tmp_path / folder / "ck.pt")
    assert (tmp_path / "a" / "ck.pt").read_bytes() == (tmp_path / "b" / "ck.pt").read_bytes()


def test_statistics_of_a_training_set():
    class Crops:  # the three things of_dataset reads
        num_segments = 2
        seg_lengths = torch.tensor([50, 70])

        def __len__(self) -> int:
            return 3

    stats = ProteinStats.of_dataset(Crops(), crop=64, stride=32, min_length=40)
    d = stats.to_dict()
    assert d == {"dataset": "db55_unbound", "heldout": "dips_test", "crop": 64, "stride": 32,
                 "min_segment_length": 40, "train_segments": 2, "train_crops": 3, "train_residues": 120}
    assert "init_from" not in d and ProteinStats.from_dict(d) == stats
    assert ProteinStats.of_dataset(Crops(), crop=64, stride=32, min_length=40, init_from="x.pt").to_dict()[
        "init_from"] == "x.pt"
    with pytest.raises(CheckpointError, match="train_crops"):
        ProteinStats.from_dict({k: v for k, v in d.items() if k != "train_crops"})
