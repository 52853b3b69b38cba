"""Space-group operation tables for the 230 space groups, in spglib's default settings.

Every group is used in one fixed setting: the conventional cell of spglib's *default* Hall number
for its number (the first Hall number of the type; e.g. origin choice 1 for Fd-3m, hexagonal axes for
the rhombohedral groups, unique axis b and cell choice 1 for the monoclinic groups). spglib's
``standardize`` / ``std_*`` output is in the same setting, so an analysed structure and the tables
agree without any change of basis.

An operation ``g = (R, t)`` acts on fractional coordinates (column vectors) as ``x -> R x + t``; the
tables hold the whole group of the conventional cell, centring translations included, so that the
orbit of a point under the table is its full orbit in the conventional cell (modulo 1).
"""

from __future__ import annotations

import enum
import functools
import warnings
from dataclasses import dataclass

import numpy as np
import spglib
import torch

from crystalflow.errors import InputError

__all__ = [
    "CrystalFamily",
    "SpaceGroup",
    "get_space_group",
    "check_space_group_number",
    "crystal_family",
    "default_hall_number",
    "multiplication_table",
    "operation_tensors",
]

#: Translations in the tables are multiples of 1/TRANSLATION_DENOMINATOR (ITA uses 1/2,1/3,1/4,1/6).
TRANSLATION_DENOMINATOR = 24


class CrystalFamily(str, enum.Enum):
    """The six crystal families; trigonal groups belong to the hexagonal family (hexagonal axes)."""

    TRICLINIC = "triclinic"
    MONOCLINIC = "monoclinic"
    ORTHORHOMBIC = "orthorhombic"
    TETRAGONAL = "tetragonal"
    HEXAGONAL = "hexagonal"
    CUBIC = "cubic"


@dataclass(frozen=True, eq=False)
class SpaceGroup:
    """The operations of one space group in its conventional cell (spglib default setting).

    Attributes:
        number: International Tables number, 1-230.
        hall_number: spglib Hall number of the setting used (1-530).
        symbol: Hermann-Mauguin short symbol, e.g. ``"Fd-3m"``.
        family: crystal family (fixes the lattice constraints).
        rotations: ``[G, 3, 3]`` int64, linear parts acting on fractional column vectors.
        translations: ``[G, 3]`` float64 in ``[0, 1)``, fractional translation parts.
        rotations_inv: ``[G, 3, 3]`` int64, exact inverses of ``rotations``.

    Operation 0 is the identity. ``G`` counts centring translations (Fm-3m has 192 operations).
    """

    number: int
    hall_number: int
    symbol: str
    family: CrystalFamily
    rotations: np.ndarray
    translations: np.ndarray
    rotations_inv: np.ndarray

    @property
    def num_ops(self) -> int:
        """Number ``G`` of operations in the conventional cell."""
        return int(self.rotations.shape[0])


def check_space_group_number(number: int) -> int:
    """Return ``number`` as an int if it is a space-group number (1-230), else raise InputError."""
    try:
        as_int = int(number)
    except (TypeError, ValueError):
        raise InputError(f"space group must be an integer from 1 to 230, got {number!r}") from None
    if as_int != number or not 1 <= as_int <= 230:
        raise InputError(f"space group must be an integer from 1 to 230, got {number!r}")
    return as_int


@functools.lru_cache(maxsize=None)
def _default_hall_numbers() -> tuple[int, ...]:
    """Tuple indexed by space-group number (index 0 unused) of spglib's default Hall numbers."""
    first: dict[int, int] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for hall in range(1, 531):
            first.setdefault(int(spglib.get_spacegroup_type(hall).number), hall)
    return (0,) + tuple(first[n] for n in range(1, 231))


def default_hall_number(number: int) -> int:
    """spglib's default Hall number (the first one of the type) for a space-group number."""
    return _default_hall_numbers()[check_space_group_number(number)]


def crystal_family(number: int) -> CrystalFamily:
    """Crystal family of a space group (143-194, trigonal included, is hexagonal)."""
    n = check_space_group_number(number)
    if n <= 2:
        return CrystalFamily.TRICLINIC
    if n <= 15:
        return CrystalFamily.MONOCLINIC
    if n <= 74:
        return CrystalFamily.ORTHORHOMBIC
    if n <= 142:
        return CrystalFamily.TETRAGONAL
    if n <= 194:
        return CrystalFamily.HEXAGONAL
    return CrystalFamily.CUBIC


@functools.lru_cache(maxsize=None)
def get_space_group(number: int) -> SpaceGroup:
    """Operation table of a space group in spglib's default setting (cached).

    Args:
        number: space-group number, 1-230.

    Returns:
        The frozen :class:`SpaceGroup`; its arrays are read-only.

    Raises:
        InputError: ``number`` is not an integer in 1-230.
    """
    n = check_space_group_number(number)
    hall = default_hall_number(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        data = spglib.get_symmetry_from_database(hall)
        sg_type = spglib.get_spacegroup_type(hall)
    rotations = np.asarray(data["rotations"], dtype=np.int64)
    translations = np.mod(np.asarray(data["translations"], dtype=np.float64), 1.0)
    # Snap to the exact rational grid so that compositions compare exactly.
    translations = np.mod(np.round(translations * TRANSLATION_DENOMINATOR), TRANSLATION_DENOMINATOR)
    translations = translations / TRANSLATION_DENOMINATOR
    identity = np.all(rotations == np.eye(3, dtype=np.int64), axis=(1, 2)) & np.all(
        translations == 0.0, axis=1
    )
    order = np.concatenate([np.flatnonzero(identity), np.flatnonzero(~identity)])
    rotations, translations = rotations[order], translations[order]
    rotations_inv = np.rint(np.linalg.inv(rotations)).astype(np.int64)
    for array in (rotations, translations, rotations_inv):
        array.setflags(write=False)
    return SpaceGroup(
        number=n,
        hall_number=hall,
        symbol=str(sg_type.international_short),
        family=crystal_family(n),
        rotations=rotations,
        translations=translations,
        rotations_inv=rotations_inv,
    )


def _operation_keys(rotations: np.ndarray, translations: np.ndarray) -> np.ndarray:
    """Integer key of each operation modulo lattice translations.

    Args:
        rotations: ``[..., 3, 3]`` integer matrices with entries in {-1, 0, 1} (true for the tables).
        translations: ``[..., 3]`` fractional translations (any integer part is discarded).

    Returns:
        ``[...]`` int64 keys, equal iff the operations are equal modulo integer translations.
    """
    digits = (rotations.reshape(*rotations.shape[:-2], 9) + 1).astype(np.int64)
    key = np.zeros(rotations.shape[:-2], dtype=np.int64)
    for d in range(9):
        key = key * 3 + digits[..., d]
    steps = np.mod(np.rint(translations * TRANSLATION_DENOMINATOR), TRANSLATION_DENOMINATOR)
    for d in range(3):
        key = key * TRANSLATION_DENOMINATOR + steps[..., d].astype(np.int64)
    return key


@functools.lru_cache(maxsize=None)
def multiplication_table(number: int) -> np.ndarray:
    """Group multiplication table modulo lattice translations (cached).

    Args:
        number: space-group number.

    Returns:
        ``[G, G]`` int64 ``table`` with ``g_a o g_b == g_table[a, b]`` (``(g_a o g_b)(x) = g_a(g_b(x))``)
        modulo integer translations.

    Raises:
        RuntimeError: the table is not closed (a corrupt operation table; never expected).
    """
    group = get_space_group(number)
    rot, trans = group.rotations, group.translations
    comp_rot = np.einsum("aij,bjk->abik", rot, rot)
    comp_trans = np.einsum("aij,bj->abi", rot, trans) + trans[:, None, :]
    keys = _operation_keys(rot, trans)
    order = np.argsort(keys)
    comp_keys = _operation_keys(comp_rot, comp_trans)
    pos = np.clip(np.searchsorted(keys[order], comp_keys), 0, len(keys) - 1)
    table = order[pos]
    if not np.array_equal(keys[table], comp_keys):
        raise RuntimeError(f"operation table of space group {number} is not closed")
    table.setflags(write=False)
    return table


def operation_tensors(
    number: int, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Operations of a space group as tensors.

    Args:
        number: space-group number, 1-230.
        dtype: floating dtype of the returned tensors.
        device: device of the returned tensors.

    Returns:
        ``(rotations [G, 3, 3], translations [G, 3])`` acting as ``x -> R x + t`` on fractional
        column vectors.
    """
    group = get_space_group(number)
    return (
        torch.tensor(group.rotations, dtype=dtype, device=device),
        torch.tensor(group.translations, dtype=dtype, device=device),
    )
