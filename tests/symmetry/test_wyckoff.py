"""Wyckoff tables: structure, agreement with pyxtal's orbits and with spglib's letters."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import spglib
from pymatgen.core import Lattice

from crystalflow.errors import InputError
from crystalflow.symmetry import (
    NUM_WYCKOFF_IDS,
    CrystalFamily,
    get_space_group,
    global_wyckoff_id,
    wyckoff_position,
    wyckoff_positions,
)
from crystalflow.symmetry.wyckoff import _ORIGIN_SHIFTS_EIGHTHS, locate_on_wyckoff


def _orbit(group, x: np.ndarray) -> np.ndarray:
    return np.mod(np.einsum("gij,j->gi", group.rotations, x) + group.translations, 1.0)


def _same_set(a: np.ndarray, b: np.ndarray, tol: float = 1e-8) -> bool:
    if len(a) != len(b):
        return False
    d = a[:, None, :] - b[None, :, :]
    close = np.abs(d - np.round(d)).max(-1) < tol
    return bool(close.any(1).all() and close.any(0).all())


def test_tables_are_consistent_for_all_groups():
    total = 0
    for n in range(1, 231):
        group = get_space_group(n)
        wps = wyckoff_positions(n)
        total += len(wps)
        assert [wp.index for wp in wps] == list(range(len(wps)))
        assert len({wp.letter for wp in wps}) == len(wps)
        assert wps[0].letter == "a"
        assert [wp.multiplicity for wp in wps] == sorted(wp.multiplicity for wp in wps)
        assert wps[-1].multiplicity == group.num_ops and wps[-1].dof == 3
        for wp in wps:
            assert wp.coset_ops[0] == 0 and len(wp.coset_ops) == wp.multiplicity
            assert len(wp.stabilizer) * wp.multiplicity == group.num_ops
            assert np.array_equal(
                np.sort(wp.orbit_perm, axis=1),
                np.broadcast_to(np.arange(wp.multiplicity), wp.orbit_perm.shape),
            )
            # The site-symmetry group fixes the whole subspace W u + b (modulo 1).
            u = np.random.default_rng(n).uniform(size=wp.dof)
            x = wp.point(u)
            fixed = _orbit(group, x)[wp.stabilizer] - x
            assert np.abs(fixed - np.round(fixed)).max() < 1e-9
            # orbit_perm describes the action of every operation on the orbit points.
            pts = _orbit(group, x)[wp.coset_ops]
            images = np.einsum("gij,mj->gmi", group.rotations, pts) + group.translations[:, None]
            d = images - pts[wp.orbit_perm]
            assert np.abs(d - np.round(d)).max() < 1e-9
    assert total == NUM_WYCKOFF_IDS
    from crystalflow.symmetry.batch import WYCKOFF_COUNTS

    assert WYCKOFF_COUNTS == tuple(len(wyckoff_positions(n)) for n in range(1, 231))
    assert sum(WYCKOFF_COUNTS) == NUM_WYCKOFF_IDS
    assert global_wyckoff_id(1, 0) == 0 and global_wyckoff_id(230, 7) == NUM_WYCKOFF_IDS - 1


def test_orbits_equal_pyxtal_listings_for_all_groups():
    """Every orbit computed with spglib's operations equals pyxtal's listed coordinates (shifted)."""
    from pyxtal.symmetry import Group

    for n in range(1, 231):
        group = get_space_group(n)
        shift = np.array(_ORIGIN_SHIFTS_EIGHTHS.get(n, (0, 0, 0))) / 8.0
        for pwp in Group(n):
            wp = wyckoff_position(n, pwp.letter)
            assert wp.multiplicity == pwp.multiplicity
            free = np.zeros(3)
            cols = [j for j in range(3) if np.any(np.abs(pwp.ops[0].rotation_matrix[:, j]) > 0)]
            free[cols] = np.random.default_rng(n).uniform(size=len(cols))
            listed = np.mod([op.operate(free) + shift for op in pwp.ops], 1.0)
            ours = _orbit(group, wp.point(free[cols]))[wp.coset_ops]
            assert _same_set(listed, ours), (n, wp.letter)


_LATTICES = {
    CrystalFamily.TRICLINIC: (5, 6, 7, 80, 85, 95),
    CrystalFamily.MONOCLINIC: (5, 6, 7, 90, 100, 90),
    CrystalFamily.ORTHORHOMBIC: (5, 6, 7, 90, 90, 90),
    CrystalFamily.TETRAGONAL: (5, 5, 7, 90, 90, 90),
    CrystalFamily.HEXAGONAL: (5, 5, 7, 90, 90, 120),
    CrystalFamily.CUBIC: (6, 6, 6, 90, 90, 90),
}


def _check_letters_against_spglib(n: int, rng: np.random.Generator) -> int:
    """Put a generic orbit plus one orbit on each Wyckoff position; compare spglib's letter."""
    group = get_space_group(n)
    wps = wyckoff_positions(n)
    lattice = Lattice.from_parameters(*_LATTICES[group.family]).matrix
    generic = _orbit(group, rng.uniform(size=3))
    checked = 0
    for wp in wps:
        special = _orbit(group, wp.point(rng.uniform(size=wp.dof)))[wp.coset_ops]
        cell = (
            lattice,
            np.concatenate([generic, special]),
            [1] * len(generic) + [2] * len(special),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            data = spglib.get_symmetry_dataset(cell, symprec=1e-4)
        assert data.number == n
        same_setting = np.allclose(data.transformation_matrix, np.eye(3)) and np.allclose(
            data.origin_shift - np.round(data.origin_shift), 0.0, atol=1e-6
        )
        if same_setting:  # otherwise letters may differ by a normaliser operation
            assert set(data.wyckoffs[len(generic) :]) == {wp.letter}, (n, wp.letter)
            checked += 1
    return checked


def test_letters_agree_with_spglib_all_groups():
    rng = np.random.default_rng(0)
    checked = sum(_check_letters_against_spglib(n, rng) for n in range(1, 231))
    assert checked >= 0.99 * NUM_WYCKOFF_IDS


def test_locate_on_wyckoff_finds_points_and_distances():
    wp = wyckoff_position(191, "o")  # x, 2x, z
    u = np.array([[0.7, 0.3], [0.1, 0.9]])
    pts = wp.point(u) + np.array([[1.0, -1.0, 2.0], [0.0, 0.0, 0.0]])
    params, dist = locate_on_wyckoff(pts, wp)
    np.testing.assert_allclose(dist, 0.0, atol=1e-12)
    np.testing.assert_allclose(wp.point(params), wp.point(u), atol=1e-12)
    _, dist = locate_on_wyckoff(np.array([[0.5, 0.5, 0.5]]), wyckoff_position(225, "a"))
    np.testing.assert_allclose(dist, np.sqrt(0.75))


def test_site_symmetry_symbols():
    assert wyckoff_position(227, "a").site_symmetry == "-43m"
    assert wyckoff_position(225, "c").site_symmetry == "-43m"
    assert wyckoff_position(1, "a").site_symmetry == "1"


def test_unknown_letter_raises():
    with pytest.raises(InputError, match="does not exist in space group 225"):
        wyckoff_position(225, "z")
    with pytest.raises(InputError):
        wyckoff_positions(0)
