"""Typed data statistics of a protein checkpoint (the counterpart of
:class:`~crystalflow.crystal_tasks.stats.CrystalStats`).

A checkpoint stores its statistics as a plain dict (``Checkpoint.stats``, loadable with
``weights_only=True``); :class:`ProteinStats` is the typed view a training run builds
(:meth:`ProteinStats.of_dataset`) and a reader may use (:meth:`ProteinStats.from_dict`).
:meth:`ProteinStats.to_dict` gives the dict with the keys, order and types checkpoints have always
stored, so a checkpoint written through it is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from crystalflow.errors import CheckpointError

__all__ = ["ProteinStats"]

#: training data of every protein checkpoint so far (and its held-out split)
TRAIN_DATASET = "db55_unbound"
HELDOUT_DATASET = "dips_test"


@dataclass(frozen=True)
class ProteinStats:
    """What a protein backbone flow's checkpoint records about its training crops.

    Attributes:
        dataset: the training split (``db55_unbound``).
        heldout: the held-out split used for selection (``dips_test``).
        crop: residues per training crop.
        stride: residues between the starts of two training crops of a segment.
        min_segment_length: shortest chain segment kept (residues).
        train_segments: chain segments of the training split.
        train_crops: training crops.
        train_residues: residues of the training segments.
        init_from: the ``--init-from`` checkpoint the run started from (``None``: a fresh run).
    """

    dataset: str
    heldout: str
    crop: int
    stride: int
    min_segment_length: int
    train_segments: int
    train_crops: int
    train_residues: int
    init_from: str | None = None

    @classmethod
    def of_dataset(cls, train_set, *, crop: int, stride: int, min_length: int,
                   init_from: str | None = None) -> "ProteinStats":
        """Statistics of a training set of crops.

        Args:
            train_set: a :class:`~crystalflow.proteins.dataset.BackboneDataset` (``len``,
                ``num_segments``, ``seg_lengths``).
            crop / stride / min_length: the crops it was cut into.
            init_from: the checkpoint the run continues from, if any.
        """
        return cls(dataset=TRAIN_DATASET, heldout=HELDOUT_DATASET, crop=int(crop), stride=int(stride),
                   min_segment_length=int(min_length), train_segments=int(train_set.num_segments),
                   train_crops=len(train_set), train_residues=int(train_set.seg_lengths.sum()),
                   init_from=None if init_from is None else str(init_from))

    def to_dict(self) -> dict:
        """The plain dict a checkpoint stores (``init_from`` left out when ``None``)."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.init_from is None:
            del out["init_from"]
        return out

    @classmethod
    def from_dict(cls, stats: dict) -> "ProteinStats":
        """Read a protein checkpoint's statistics (unknown keys ignored).

        Raises:
            CheckpointError: a field other than ``init_from`` is missing.
        """
        required = [f.name for f in fields(cls) if f.name != "init_from"]
        missing = [k for k in required if k not in stats]
        if missing:
            raise CheckpointError(f"protein checkpoint statistics lack {', '.join(missing)}")
        init_from = stats.get("init_from")
        return cls(dataset=str(stats["dataset"]), heldout=str(stats["heldout"]), crop=int(stats["crop"]),
                   stride=int(stats["stride"]), min_segment_length=int(stats["min_segment_length"]),
                   train_segments=int(stats["train_segments"]), train_crops=int(stats["train_crops"]),
                   train_residues=int(stats["train_residues"]),
                   init_from=None if init_from is None else str(init_from))
