"""Checks every structure the package writes goes through: space group, distances, validity.

One place for "is this output trustworthy": the spglib space group (symprec 0.1, the field's
tolerance for generated structures) against the one asked for, the smallest interatomic distance
and CDVAE's validity (structural + SMACT). Writers put the result beside each file (summary.csv)
and count the failures on stderr; nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pymatgen.core import Structure

from crystalflow.errors import InputError
from crystalflow.metrics.symmetry import ANGLE_TOLERANCE, SYMPREC
from crystalflow.metrics.validity import (
    DISTANCE_CUTOFF,
    MIN_VOLUME,
    cell_volume,
    degenerate_volume,
    min_interatomic_distance,
    smact_validity,
    structure_validity,
)

__all__ = ["StructureCheck", "check_structure", "spglib_space_group"]


def spglib_space_group(structure: Structure, symprec: float = SYMPREC,
                       angle_tolerance: float = ANGLE_TOLERANCE) -> int | None:
    """spglib space-group number of a structure, ``None`` when spglib fails."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        return int(SpacegroupAnalyzer(structure, symprec=symprec,
                                      angle_tolerance=angle_tolerance).get_space_group_number())
    except Exception:
        return None


@dataclass(frozen=True)
class StructureCheck:
    """What a written structure was checked for.

    Attributes:
        space_group: spglib number at ``symprec`` (``None`` if spglib failed).
        requested_space_group: the group asked for (``None``: no request).
        min_distance: smallest interatomic distance (A), periodic images included; 0 for a
            degenerate cell (non-finite lattice or volume below CDVAE's 0.1 A^3: a flat cell packs
            its periodic images arbitrarily close).
        structure_valid: CDVAE structural validity (distances >= 0.5 A, volume >= 0.1 A^3).
        composition_valid: CDVAE's SMACT validity of the composition.
        volume: cell volume (A^3; NaN for a non-finite lattice).
    """

    space_group: int | None
    requested_space_group: int | None
    min_distance: float
    structure_valid: bool
    composition_valid: bool
    volume: float = float("nan")

    @property
    def degenerate_cell(self) -> bool:
        """The cell is not finite or flatter than CDVAE's minimum volume."""
        return degenerate_volume(self.volume)

    @property
    def keeps_space_group(self) -> bool:
        """True when no group was requested or spglib finds exactly the requested one."""
        return self.requested_space_group is None or self.space_group == self.requested_space_group

    @property
    def ok(self) -> bool:
        """Structurally valid and in the requested space group (composition validity is
        reported, not required: a user may ask for a composition SMACT rejects)."""
        return self.structure_valid and self.keeps_space_group

    @property
    def problem(self) -> str:
        """One short phrase saying what failed ('' when :attr:`ok`)."""
        if not self.structure_valid and self.degenerate_cell:
            return f"degenerate cell, volume {self.volume:.3g} A^3 (< {MIN_VOLUME} A^3)"
        if not self.structure_valid:
            return f"atoms {self.min_distance:.3f} A apart (< {DISTANCE_CUTOFF} A)"
        if not self.keeps_space_group:
            return f"space group {self.space_group}, not the requested {self.requested_space_group}"
        return ""

    def to_row(self) -> dict:
        """Columns for a summary CSV."""
        return asdict(self) | {"ok": self.ok, "problem": self.problem}


def check_structure(structure: Structure, requested_space_group: int | None = None,
                    symprec: float = SYMPREC) -> StructureCheck:
    """Check one structure before it is written (see :class:`StructureCheck`).

    A degenerate cell gets ``min_distance`` 0 (:func:`~crystalflow.metrics.validity.min_interatomic_distance`)."""
    volume = cell_volume(structure)
    return StructureCheck(
        space_group=spglib_space_group(structure, symprec),
        requested_space_group=None if requested_space_group is None else int(requested_space_group),
        min_distance=float(min_interatomic_distance(structure)),
        structure_valid=bool(structure_validity(structure)),
        composition_valid=_smact_ok(structure),
        volume=volume,
    )


def _smact_ok(structure: Structure) -> bool:
    try:
        return bool(smact_validity(structure.composition))
    except InputError:  # an element SMACT has no data for: not judged valid
        return False
