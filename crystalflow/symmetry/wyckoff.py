"""Wyckoff positions of the 230 space groups as affine maps ``x = W u + b``, in spglib's settings.

The multiplicities, representative coordinate triplets and site symmetries come from pyxtal's
tables (Bilbao settings). pyxtal uses origin choice 2 for 24 groups where spglib's default is origin
choice 1, so the representatives are moved by a fixed origin shift per group, checked on every build
against spglib's operations (and, in the tests, against spglib's letters). The orbit structure of
every Wyckoff position is then recomputed with :mod:`crystalflow.symmetry.groups` (spglib's
operations); the multiplicity it gives is checked against pyxtal's, which cross-validates both.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

from crystalflow.errors import InputError
from crystalflow.symmetry.groups import (
    TRANSLATION_DENOMINATOR,
    _operation_keys,
    get_space_group,
    multiplication_table,
)

__all__ = [
    "WyckoffPosition",
    "wyckoff_positions",
    "wyckoff_position",
    "locate_on_wyckoff",
    "GENERIC_PARAMETERS",
    "WYCKOFF_LETTERS",
]

#: Free-parameter values used to probe a Wyckoff position at a generic point.
GENERIC_PARAMETERS = np.array([0.1127, 0.2381, 0.3659])

_POINT_TOL = 1e-6


@dataclass(frozen=True, eq=False)
class WyckoffPosition:
    """One Wyckoff position of a space group (spglib default setting, conventional cell).

    Attributes:
        space_group: space-group number.
        letter: Wyckoff letter (``a``...``z`` then ``A``; ``a`` is the most special).
        index: position in the ITA order, ``letter`` ``a`` is 0.
        multiplicity: number ``m`` of points of the orbit in the conventional cell.
        basis: ``W``, ``[3, k]`` float64 integer-valued; ``k`` free parameters (0 to 3).
        offset: ``b``, ``[3]`` float64 in ``[0, 1)``; the representative is ``W u + b``.
        coset_ops: ``[m]`` int64 operation indices ``c_j`` with orbit ``{g_{c_j}(W u + b)}``;
            ``coset_ops[0] == 0`` (identity), so orbit point 0 is the representative.
        orbit_perm: ``[G, m]`` int64: ``g_k`` maps orbit point ``j`` to orbit point
            ``orbit_perm[k, j]`` (modulo 1), for generic ``u``.
        stabilizer: ``[G / m]`` int64 operation indices fixing the representative (site symmetry).
    """

    space_group: int
    letter: str
    index: int
    multiplicity: int
    basis: np.ndarray
    offset: np.ndarray
    coset_ops: np.ndarray
    orbit_perm: np.ndarray
    stabilizer: np.ndarray

    @property
    def dof(self) -> int:
        """Number ``k`` of free parameters."""
        return int(self.basis.shape[1])

    @functools.cached_property
    def site_symmetry(self) -> str:
        """Oriented site-symmetry symbol from pyxtal (e.g. ``".3m"``); computed on first use."""
        from pyxtal.symmetry import Group  # slow import, only needed here

        group = Group(self.space_group)
        for wp in group:
            if wp.letter == self.letter:
                return str(wp.get_site_symmetry_object().name)
        raise RuntimeError(f"letter {self.letter} missing from pyxtal group {self.space_group}")

    @functools.cached_property
    def averaging_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The group-averaging operator of this orbit as ``(dst [P], src [P], matrix [P, 3, 3])``.

        ``v_bar_dst = sum over pairs of matrix @ v_src`` equals ``1/G sum_g R_g^{-1} v_{sigma_g(dst)}``
        with orbit-local atom indices: operations sending ``dst`` to the same ``src`` are summed
        once here, so there are ``P = sum_dst |{sigma_g(dst)}| <= G m`` pairs (``m^2``; fewer
        than ``G m`` by the site-symmetry order). Computed on first use (large for big groups).
        """
        group = get_space_group(self.space_group)
        m, num_ops = self.multiplicity, group.num_ops
        dst = np.broadcast_to(np.arange(m), (num_ops, m))
        key = (dst * m + self.orbit_perm).ravel()
        mats = np.broadcast_to(group.rotations_inv[:, None].astype(np.float64), (num_ops, m, 3, 3))
        dense = np.zeros((m * m, 3, 3))
        np.add.at(dense, key, mats.reshape(-1, 3, 3))
        used = np.unique(key)
        used = used[np.any(dense[used] != 0, axis=(1, 2))]  # operations may cancel exactly
        out = (used // m, used % m, dense[used] / num_ops)
        for array in out:
            array.setflags(write=False)
        return out

    def point(self, params: np.ndarray) -> np.ndarray:
        """Representative ``W u + b`` (modulo 1) for free parameters ``u`` ``[..., k]`` -> ``[..., 3]``."""
        return np.mod(np.asarray(params, dtype=np.float64) @ self.basis.T + self.offset, 1.0)


#: Origin shifts (in eighths) from pyxtal's origin choice 2 to spglib's default origin choice 1,
#: ``x_spglib = x_pyxtal + shift / 8``. Several shifts map the operations onto each other (they differ
#: by translations of the Euclidean normalizer); these are the ones under which every Wyckoff letter
#: agrees with spglib's own assignment (checked in tests/symmetry/test_wyckoff.py).
_ORIGIN_SHIFTS_EIGHTHS: dict[int, tuple[int, int, int]] = {
    48: (6, 6, 6),
    50: (2, 2, 0),
    59: (2, 2, 0),
    68: (0, 2, 2),
    70: (1, 1, 1),
    85: (2, 6, 0),
    86: (2, 2, 2),
    88: (0, 2, 1),
    125: (2, 2, 0),
    126: (2, 2, 2),
    129: (2, 6, 0),
    130: (2, 6, 0),
    133: (2, 6, 2),
    134: (2, 6, 2),
    137: (2, 6, 2),
    138: (2, 6, 2),
    141: (0, 6, 1),
    142: (0, 6, 1),
    201: (2, 2, 2),
    203: (1, 1, 1),
    222: (2, 2, 2),
    224: (2, 2, 2),
    227: (1, 1, 1),
    228: (3, 3, 3),
}


def _origin_shift(number: int, pyxtal_general_ops: list) -> np.ndarray:
    """Shift ``p`` with ``x_spglib = x_pyxtal + p`` mapping pyxtal's setting onto spglib's.

    Args:
        number: space-group number.
        pyxtal_general_ops: pyxtal's general-position SymmOps (full conventional group).

    Returns:
        ``[3]`` float64 shift.

    Raises:
        RuntimeError: the shift does not map pyxtal's operations onto spglib's (table mismatch).
    """
    group = get_space_group(number)
    shift = np.array(_ORIGIN_SHIFTS_EIGHTHS.get(number, (0, 0, 0)), dtype=np.float64) / 8.0
    rot = np.array([op.rotation_matrix for op in pyxtal_general_ops]).round().astype(np.int64)
    trans = np.array([op.translation_vector for op in pyxtal_general_ops])
    moved = trans + np.einsum("gij,j->gi", np.eye(3) - rot, shift)
    same = len(rot) == group.num_ops and np.array_equal(
        np.sort(_operation_keys(rot, moved)),
        np.sort(_operation_keys(group.rotations, group.translations)),
    )
    if not same:
        raise RuntimeError(f"pyxtal and spglib settings of space group {number} do not match")
    return shift


def _wrapped(d: np.ndarray) -> np.ndarray:
    """Differences of fractional coordinates wrapped into ``[-0.5, 0.5)``."""
    return d - np.round(d)


def _build_position(number: int, index: int, letter: str, mult: int, op0) -> WyckoffPosition:
    """Build one :class:`WyckoffPosition` from pyxtal's first operation (already shifted)."""
    group = get_space_group(number)
    rot0 = np.asarray(op0.rotation_matrix, dtype=np.float64).round()
    cols = [j for j in range(3) if np.any(rot0[:, j] != 0)]
    basis = rot0[:, cols]
    if np.linalg.matrix_rank(basis) != len(cols):
        raise RuntimeError(f"degenerate Wyckoff basis {number}{letter}")
    offset = np.mod(np.asarray(op0.translation_vector, dtype=np.float64), 1.0)
    offset = np.mod(np.round(offset * TRANSLATION_DENOMINATOR), TRANSLATION_DENOMINATOR)
    offset = offset / TRANSLATION_DENOMINATOR
    x = basis @ GENERIC_PARAMETERS[: len(cols)] + offset
    images = np.mod(np.einsum("gij,j->gi", group.rotations, x) + group.translations, 1.0)
    coset_of = np.full(group.num_ops, -1, dtype=np.int64)
    coset_ops: list[int] = []
    for g in range(group.num_ops):
        if coset_of[g] >= 0:
            continue
        same = np.all(np.abs(_wrapped(images - images[g])) < _POINT_TOL, axis=1)
        coset_of[same] = len(coset_ops)
        coset_ops.append(g)
    if len(coset_ops) != mult:
        raise RuntimeError(
            f"Wyckoff {number}{letter}: pyxtal multiplicity {mult}, spglib orbit {len(coset_ops)}"
        )
    coset = np.asarray(coset_ops, dtype=np.int64)
    orbit_perm = coset_of[multiplication_table(number)[:, coset]]
    stabilizer = np.flatnonzero(coset_of == 0)
    for array in (basis, offset, coset, orbit_perm, stabilizer):
        array.setflags(write=False)
    return WyckoffPosition(
        space_group=number,
        letter=letter,
        index=index,
        multiplicity=mult,
        basis=basis,
        offset=offset,
        coset_ops=coset,
        orbit_perm=orbit_perm,
        stabilizer=stabilizer,
    )


#: Wyckoff letters in ITA order; Pmmm (47), the only group with 27 positions, ends with ``A``.
WYCKOFF_LETTERS = "abcdefghijklmnopqrstuvwxyzA"


@functools.lru_cache(maxsize=None)
def wyckoff_positions(number: int) -> tuple[WyckoffPosition, ...]:
    """All Wyckoff positions of a space group in ITA order (``a`` first, general position last).

    Args:
        number: space-group number, 1-230.

    Returns:
        Tuple of :class:`WyckoffPosition`; entry ``i`` has ``index == i``.

    Raises:
        InputError: ``number`` is not in 1-230.
    """
    from pyxtal.symmetry import get_wyckoffs  # slow import, only needed to build the tables

    group = get_space_group(number)  # validates the number
    listed = get_wyckoffs(group.number)  # pyxtal: general position first, ops per position
    shift = _origin_shift(group.number, listed[0])
    positions = []
    for index, ops in enumerate(reversed(listed)):
        op0 = ops[0]
        shifted = type(op0).from_rotation_and_translation(
            op0.rotation_matrix, np.asarray(op0.translation_vector) + shift
        )
        letter = WYCKOFF_LETTERS[index]
        positions.append(_build_position(group.number, index, letter, len(ops), shifted))
    return tuple(positions)


def wyckoff_position(number: int, letter: str) -> WyckoffPosition:
    """The Wyckoff position with a given letter.

    Raises:
        InputError: bad space-group number, or no such letter in that group.
    """
    for wp in wyckoff_positions(number):
        if wp.letter == letter:
            return wp
    letters = "".join(wp.letter for wp in wyckoff_positions(number))
    symbol = get_space_group(number).symbol
    raise InputError(
        f"Wyckoff letter {letter!r} does not exist in space group {number} ({symbol}); "
        f"its letters are {letters}"
    )


_SHIFTS = np.array(list(itertools.product(range(-2, 3), repeat=3)), dtype=np.float64)


def locate_on_wyckoff(
    points: np.ndarray, wp: WyckoffPosition, metric: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest point of the affine subspace ``W u + b`` (modulo 1) to each point.

    Not on the hot path (analysis and reconstruction only): integer shifts in ``{-2..2}^3`` are
    searched exhaustively, which covers every table entry (coefficients of ``W`` are at most 2).

    Args:
        points: ``[n, 3]`` fractional coordinates.
        wp: the Wyckoff position.
        metric: ``[3, 3]`` metric tensor ``L L^T`` used for distances (identity if None).

    Returns:
        ``(params [n, k] in [0, 1), distance [n])``: free parameters of the nearest subspace point
        and the distance to it (in the units of ``metric``; fractional if None).
    """
    pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
    metric = np.eye(3) if metric is None else np.asarray(metric, dtype=np.float64)
    k = wp.dof
    diff = pts[:, None, :] - wp.offset + _SHIFTS[None, :, :]  # [n, S, 3]
    if k == 0:
        params = np.zeros((len(pts), len(_SHIFTS), 0))
        resid = diff
    else:
        basis = wp.basis
        gram = basis.T @ metric @ basis
        params = np.linalg.solve(gram, (diff @ metric @ basis)[..., None])[..., 0]
        resid = diff - params @ basis.T
    dist2 = np.einsum("nsi,ij,nsj->ns", resid, metric, resid)
    best = np.argmin(dist2, axis=1)
    rows = np.arange(len(pts))
    return np.mod(params[rows, best], 1.0), np.sqrt(np.maximum(dist2[rows, best], 0.0))
