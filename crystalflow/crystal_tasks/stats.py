"""Typed data statistics of a crystal checkpoint (tasks csp, sgcsp, dng).

A checkpoint stores its statistics as a plain dict (``Checkpoint.stats``, loadable with
``weights_only=True``); :class:`CrystalStats` is the typed view every training run builds
(:meth:`CrystalStats.of_dataset`) and every reader may use (:meth:`CrystalStats.from_dict`, which
also reads the dicts older checkpoints wrote). Fields a task does not use stay ``None`` and are
left out of the dict, so a checkpoint's dict keeps the keys it always had.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from crystalflow.errors import CheckpointError

__all__ = ["CrystalStats"]


def _ints(values) -> tuple[int, ...] | None:
    return None if values is None else tuple(int(v) for v in values)


@dataclass(frozen=True)
class CrystalStats:
    """What a crystal flow's checkpoint records about its training data.

    Attributes:
        lattice_chart: ``LatticeChart.state_dict()`` of the chart the flow was trained in.
        max_atoms: largest cell (atoms) of the training set.
        dataset: benchmark name or ``user:PATH``.
        train_size: training crystals.
        elements: atomic numbers seen in training (csp, sgcsp; ``None``: not recorded).
        cell: ``"conventional"`` for space-group flows (symmetrised conventional cells).
        symprec: symmetry tolerance of the analysis that gave the conventional cells.
        allowed_types: atomic numbers a DNG flow may generate.
        skeletons: ``SkeletonDistribution.state_dict()`` of a DNG flow.
        init_from: the ``--init-from`` checkpoint the run started from.
        val_ids: material ids of the held-out part of user data.
    """

    lattice_chart: dict
    max_atoms: int
    dataset: str
    train_size: int
    elements: tuple[int, ...] | None = None
    cell: str | None = None
    symprec: float | None = None
    allowed_types: tuple[int, ...] | None = None
    skeletons: dict | None = None
    init_from: str | None = None
    val_ids: tuple[str, ...] | None = None

    @classmethod
    def of_dataset(cls, train_set, chart, dataset: str, *, symprec: float | None = None,
                   **extra: Any) -> "CrystalStats":
        """Statistics of a training set.

        Args:
            train_set: a ``CrystalDataset`` or ``SymmetricDataset`` (``num_atoms [B]``, ``len``).
            chart: the fitted :class:`~crystalflow.manifolds.LatticeChart`.
            dataset: its name.
            symprec: the symmetry tolerance of a ``SymmetricDataset`` (sets ``cell`` conventional).
            extra: further fields (``elements``, ``allowed_types``, ``skeletons``...).
        """
        cell = "conventional" if symprec is not None else None
        return cls(lattice_chart=chart.state_dict(), max_atoms=int(train_set.num_atoms.max()),
                   dataset=dataset, train_size=len(train_set), cell=cell, symprec=symprec, **extra)

    def with_init(self, init_from: str, init_stats: dict) -> "CrystalStats":
        """Continued from ``init_from`` (a checkpoint with statistics ``init_stats``): the larger
        ``max_atoms`` of the two is kept."""
        return replace(self, init_from=init_from,
                       max_atoms=max(self.max_atoms, int(init_stats.get("max_atoms", 0))))

    def to_dict(self) -> dict:
        """The plain dict a checkpoint stores (fields that are ``None`` left out)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, stats: dict) -> "CrystalStats":
        """Read a checkpoint's statistics (older checkpoints' dicts too; unknown keys ignored).

        Raises:
            CheckpointError: a required field (lattice chart, max atoms, dataset, size) is missing.
        """
        missing = [k for k in ("lattice_chart", "max_atoms", "dataset", "train_size") if k not in stats]
        if missing:
            raise CheckpointError(f"checkpoint statistics lack {', '.join(missing)}")
        val_ids = stats.get("val_ids")
        return cls(lattice_chart=stats["lattice_chart"], max_atoms=int(stats["max_atoms"]),
                   dataset=str(stats["dataset"]), train_size=int(stats["train_size"]),
                   elements=_ints(stats.get("elements")), cell=stats.get("cell"),
                   symprec=None if stats.get("symprec") is None else float(stats["symprec"]),
                   allowed_types=_ints(stats.get("allowed_types")), skeletons=stats.get("skeletons"),
                   init_from=stats.get("init_from"),
                   val_ids=None if val_ids is None else tuple(str(v) for v in val_ids))

    def allowed_mask(self, num_types: int) -> torch.Tensor:
        """``[num_types]`` bool mask of :attr:`allowed_types` (all False when not recorded)."""
        mask = torch.zeros(num_types, dtype=torch.bool)
        if self.allowed_types:
            mask[torch.tensor(self.allowed_types, dtype=torch.long)] = True
        return mask
