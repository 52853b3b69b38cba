"""Operation tables: closure, identity, counts against spglib and pyxtal, bad numbers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import spglib
import torch

from crystalflow.errors import InputError
from crystalflow.symmetry import (
    CrystalFamily,
    crystal_family,
    get_space_group,
    operation_tensors,
    wyckoff_positions,
)
from crystalflow.symmetry.groups import default_hall_number, multiplication_table


def _keys(rot: np.ndarray, trans: np.ndarray) -> set[tuple]:
    """Operations as hashable tuples modulo lattice translations (translations on a 1/24 grid)."""
    steps = np.mod(np.rint(trans * 24), 24).astype(int)
    return {tuple(r.ravel()) + tuple(t) for r, t in zip(rot.astype(int), steps)}


def test_all_groups_closed_with_identity_first_and_inverses():
    for n in range(1, 231):
        g = get_space_group(n)
        assert g.rotations.shape == (g.num_ops, 3, 3) and g.translations.shape == (g.num_ops, 3)
        np.testing.assert_array_equal(g.rotations[0], np.eye(3))
        np.testing.assert_array_equal(g.translations[0], 0.0)
        ops = _keys(g.rotations, g.translations)
        assert len(ops) == g.num_ops, f"duplicate operations in group {n}"
        comp_rot = np.einsum("aij,bjk->abik", g.rotations, g.rotations).reshape(-1, 3, 3)
        comp_trans = (
            np.einsum("aij,bj->abi", g.rotations, g.translations) + g.translations[:, None]
        ).reshape(-1, 3)
        assert _keys(comp_rot, comp_trans) <= ops, f"group {n} not closed"
        inv_trans = -np.einsum("aij,aj->ai", g.rotations_inv, g.translations)
        assert _keys(g.rotations_inv, inv_trans) <= ops, f"group {n} lacks inverses"
        np.testing.assert_array_equal(
            np.einsum("aij,ajk->aik", g.rotations, g.rotations_inv),
            np.broadcast_to(np.eye(3), (g.num_ops, 3, 3)),
        )
        table = multiplication_table(n)
        assert all(sorted(row) == list(range(g.num_ops)) for row in table.tolist())  # Latin square


def test_counts_match_spglib_database_and_pyxtal_general_position():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        number_of_hall = [0] + [spglib.get_spacegroup_type(h).number for h in range(1, 531)]
        for n in range(1, 231):
            g = get_space_group(n)
            hall = default_hall_number(n)
            assert number_of_hall[hall] == n and n not in number_of_hall[:hall]
            assert g.num_ops == len(spglib.get_symmetry_from_database(hall)["rotations"])
            assert g.num_ops == wyckoff_positions(n)[-1].multiplicity  # pyxtal's table


def test_counts_match_spglib_analysis_of_a_generic_orbit():
    """spglib, run on orbits of generic points, finds the same group with as many operations."""
    rng = np.random.default_rng(0)
    lattices = {
        CrystalFamily.TRICLINIC: np.array([[5.0, 0, 0], [0.7, 6.0, 0], [0.4, 0.9, 7.0]]),
        CrystalFamily.MONOCLINIC: np.array([[5.0, 0, 0], [0, 6.0, 0], [-1.1, 0, 7.0]]),
        CrystalFamily.ORTHORHOMBIC: np.diag([5.0, 6.0, 7.0]),
        CrystalFamily.TETRAGONAL: np.diag([5.0, 5.0, 7.0]),
        CrystalFamily.HEXAGONAL: np.array(
            [[5.0, 0, 0], [-2.5, 5.0 * np.sqrt(3) / 2, 0], [0, 0, 7.0]]
        ),
        CrystalFamily.CUBIC: np.eye(3) * 6.0,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for n in (1, 2, 5, 15, 43, 70, 88, 141, 146, 166, 186, 194, 206, 227, 230):
            g = get_space_group(n)
            x = rng.uniform(
                size=(3, 3)
            )  # three generic orbits: one orbit alone may be more symmetric
            orbits = np.mod(np.einsum("gij,oj->ogi", g.rotations, x) + g.translations, 1.0)
            types = np.repeat([1, 2, 3], g.num_ops)
            data = spglib.get_symmetry_dataset(
                (lattices[g.family], orbits.reshape(-1, 3), types), symprec=1e-5
            )
            assert data.number == n and data.hall_number == g.hall_number
            assert len(data.rotations) == g.num_ops
            assert _keys(data.rotations, data.translations) == _keys(g.rotations, g.translations)


def test_operation_tensors_dtype_and_device():
    rot, trans = operation_tensors(227, dtype=torch.float32)
    assert rot.shape == (192, 3, 3) and trans.shape == (192, 3) and rot.dtype == torch.float32


def test_crystal_families():
    assert crystal_family(2) is CrystalFamily.TRICLINIC
    assert crystal_family(15) is CrystalFamily.MONOCLINIC
    assert crystal_family(74) is CrystalFamily.ORTHORHOMBIC
    assert crystal_family(142) is CrystalFamily.TETRAGONAL
    assert crystal_family(166) is CrystalFamily.HEXAGONAL
    assert crystal_family(194) is CrystalFamily.HEXAGONAL
    assert crystal_family(195) is CrystalFamily.CUBIC
    # Spot checks of the settings: C2/m unique axis b, R-3m hexagonal axes, Fd-3m origin choice 1.
    assert get_space_group(12).num_ops == 8 and get_space_group(166).num_ops == 36
    assert get_space_group(227).hall_number == 525


@pytest.mark.parametrize("bad", [0, 231, -5, 2.5, "abc", None])
def test_bad_space_group_numbers(bad):
    with pytest.raises(InputError, match="1 to 230"):
        get_space_group(bad)
