"""Wyckoff templates: a space group plus one (Wyckoff letter, element) pair per orbit."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass

from pymatgen.core import Composition, Element

from crystalflow.errors import InputError
from crystalflow.symmetry.groups import check_space_group_number, get_space_group
from crystalflow.symmetry.wyckoff import WyckoffPosition, wyckoff_position

__all__ = ["WyckoffTemplate", "parse_composition"]


def parse_composition(composition: Mapping[str | int, int] | Composition | str) -> dict[int, int]:
    """Atom counts per atomic number from a formula, pymatgen Composition or mapping.

    Args:
        composition: e.g. ``"Na4Cl4"``, ``{"Na": 4, "Cl": 4}``, ``{11: 4, 17: 4}``.

    Returns:
        ``{atomic number: count}`` sorted by atomic number, counts positive integers.

    Raises:
        InputError: unknown element, non-integer or non-positive count, empty composition.
    """
    try:
        if isinstance(composition, str):
            composition = Composition(composition)
        items = composition.items()
        counts: dict[int, float] = collections.defaultdict(float)
        for key, count in items:
            z = key if isinstance(key, int) else Element(str(key)).Z
            counts[int(z)] += float(count)
    except (ValueError, KeyError, AttributeError) as err:
        raise InputError(f"cannot read composition {composition!r}: {err}") from None
    out: dict[int, int] = {}
    for z, count in sorted(counts.items()):
        if not 1 <= z <= 118:
            raise InputError(f"atomic number {z} is not an element")
        if count != int(count) or count < 0:
            raise InputError(f"atom counts must be non-negative integers, got {count} for Z={z}")
        if count:
            out[z] = int(count)
    if not out:
        raise InputError(f"composition {composition!r} has no atoms")
    return out


@dataclass(frozen=True)
class WyckoffTemplate:
    """A space group and, for each orbit, its Wyckoff letter and atomic number.

    Validated on construction. Wyckoff positions without free parameters hold one orbit at most
    (a second one would put atoms on top of the first).

    Attributes:
        space_group: 1-230 (spglib default setting, conventional cell).
        letters: Wyckoff letter of each orbit.
        atom_types: atomic number of each orbit.

    Raises:
        InputError: bad space group, unknown letter, length mismatch, bad atomic number, or a
            parameter-free Wyckoff position used twice.
    """

    space_group: int
    letters: tuple[str, ...]
    atom_types: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "space_group", check_space_group_number(self.space_group))
        object.__setattr__(self, "letters", tuple(str(x) for x in self.letters))
        object.__setattr__(self, "atom_types", tuple(int(z) for z in self.atom_types))
        if len(self.letters) != len(self.atom_types):
            raise InputError(
                f"template has {len(self.letters)} Wyckoff letters but {len(self.atom_types)} types"
            )
        if not self.letters:
            raise InputError("template has no orbits")
        for z in self.atom_types:
            if not 1 <= z <= 118:
                raise InputError(f"atomic number {z} is not an element")
        used: set[str] = set()
        for wp in self.positions:
            if wp.dof == 0:
                if wp.letter in used:
                    symbol = get_space_group(self.space_group).symbol
                    raise InputError(
                        f"Wyckoff position {wp.multiplicity}{wp.letter} of space group "
                        f"{self.space_group} ({symbol}) has no free parameter and is used twice"
                    )
                used.add(wp.letter)

    @property
    def positions(self) -> tuple[WyckoffPosition, ...]:
        """The Wyckoff position of each orbit (raises InputError for an unknown letter)."""
        return tuple(wyckoff_position(self.space_group, letter) for letter in self.letters)

    @property
    def num_atoms(self) -> int:
        """Atoms in the conventional cell."""
        return sum(wp.multiplicity for wp in self.positions)

    @property
    def composition(self) -> dict[int, int]:
        """``{atomic number: count}`` in the conventional cell, sorted by atomic number."""
        counts: dict[int, int] = collections.defaultdict(int)
        for wp, z in zip(self.positions, self.atom_types):
            counts[z] += wp.multiplicity
        return dict(sorted(counts.items()))
