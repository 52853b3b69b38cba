"""``CrystalBatch``: crystals of different sizes concatenated PyG-style (no padding)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

import torch

from crystalflow.crystals.crystal import Crystal

if TYPE_CHECKING:  # pragma: no cover
    from crystalflow.symmetry.batch import SymmetryBatch


@dataclass(frozen=True)
class CrystalBatch:
    """A batch of B crystals with N atoms in total.

    Attributes:
        frac: ``[N, 3]`` fractional coordinates.
        lattice: ``[B, 6]`` lattice parameters (Angstrom, degrees).
        atom_types: ``[N]`` int64 atomic numbers.
        batch: ``[N]`` int64 index of each atom's crystal.
        num_atoms: ``[B]`` int64 atoms per crystal.
        material_ids: optional identifiers, one per crystal.
        symmetry: optional :class:`~crystalflow.symmetry.SymmetryBatch` of space-group
            conditioned batches (atoms in the Wyckoff layout's order); None for P1 batches.
    """

    frac: torch.Tensor
    lattice: torch.Tensor
    atom_types: torch.Tensor
    batch: torch.Tensor
    num_atoms: torch.Tensor
    material_ids: tuple[str | None, ...] | None = None
    symmetry: "SymmetryBatch | None" = None

    @property
    def num_crystals(self) -> int:
        """B, the number of crystals."""
        return int(self.num_atoms.shape[0])

    @property
    def device(self) -> torch.device:
        return self.frac.device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "CrystalBatch":
        """Move to a device and/or cast the floating fields."""
        def f(x: torch.Tensor) -> torch.Tensor:
            return x.to(device=device, dtype=dtype)

        def i(x: torch.Tensor) -> torch.Tensor:
            return x.to(device=device)

        return replace(
            self, frac=f(self.frac), lattice=f(self.lattice), atom_types=i(self.atom_types),
            batch=i(self.batch), num_atoms=i(self.num_atoms),
            symmetry=self.symmetry if self.symmetry is None or device is None else self.symmetry.to(device),
        )

    def replace(self, **changes) -> "CrystalBatch":
        """A copy with some fields replaced (frozen dataclass)."""
        return replace(self, **changes)

    def to_crystals(self) -> list[Crystal]:
        """Split back into :class:`Crystal` objects (CPU, float64)."""
        counts = self.num_atoms.tolist()
        fracs = torch.split(self.frac.detach().double().cpu(), counts)
        types = torch.split(self.atom_types.cpu(), counts)
        ids = self.material_ids or (None,) * len(counts)
        return [
            Crystal(frac=torch.remainder(f, 1.0), lattice=l, atom_types=t, material_id=m)
            for f, l, t, m in zip(fracs, self.lattice.detach().double().cpu(), types, ids)
        ]


def collate(crystals: Sequence[Crystal], dtype: torch.dtype = torch.float32) -> CrystalBatch:
    """Concatenate crystals into one :class:`CrystalBatch` (float fields cast to ``dtype``)."""
    if len(crystals) == 0:
        raise ValueError("cannot collate an empty list of crystals")
    num_atoms = torch.tensor([c.num_atoms for c in crystals], dtype=torch.long)
    return CrystalBatch(
        frac=torch.cat([c.frac for c in crystals]).to(dtype),
        lattice=torch.stack([c.lattice for c in crystals]).to(dtype),
        atom_types=torch.cat([c.atom_types for c in crystals]),
        batch=torch.repeat_interleave(torch.arange(len(crystals)), num_atoms),
        num_atoms=num_atoms,
        material_ids=tuple(c.material_id for c in crystals),
    )


def batch_index(num_atoms: torch.Tensor) -> torch.Tensor:
    """``[N]`` crystal index of every atom from ``num_atoms [B]``."""
    return torch.repeat_interleave(torch.arange(num_atoms.shape[0], device=num_atoms.device), num_atoms)
