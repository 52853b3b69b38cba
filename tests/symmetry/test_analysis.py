"""Analysis of Structures and reconstruction: MP-20 round trip, spglib agreement, bad inputs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import spglib
import torch
from pymatgen.core import Lattice, Structure

from crystalflow.errors import InputError
from crystalflow.symmetry import (
    analyze_structure,
    collate_symmetry,
    get_space_group,
    lattice_violation,
    reconstruct_structure,
    symmetry_error,
)
from crystalflow.symmetry.roundtrip import DEFAULT_SPLIT, round_trip
from crystalflow.symmetry.wyckoff import locate_on_wyckoff, wyckoff_position

from ._helpers import match_permutation

MP20_TEST = Path(DEFAULT_SPLIT)
needs_data = pytest.mark.skipif(not MP20_TEST.exists(), reason="MP-20 data not available")


@pytest.fixture(scope="module")
def mp20_structures() -> list[Structure]:
    frame = pd.read_csv(MP20_TEST, usecols=["material_id", "cif"]).sample(n=30, random_state=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [Structure.from_str(cif, fmt="cif") for cif in frame["cif"]]


@needs_data
def test_round_trip_on_100_mp20_rows():
    """Analysis -> reconstruction matches the original (CSP StructureMatcher) for >= 99%."""
    result = round_trip(MP20_TEST, rows=100, seed=1)
    assert result.total == 100
    assert result.rate >= 0.99, result.failed_ids


@needs_data
def test_analysis_is_self_consistent_and_agrees_with_spglib(mp20_structures):
    same_setting = 0
    for structure in mp20_structures:
        crystal = analyze_structure(structure)
        n = crystal.space_group
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            data = spglib.get_symmetry_dataset(
                (structure.lattice.matrix, structure.frac_coords, [s.specie.Z for s in structure]),
                symprec=0.1,
            )
        assert n == data.number
        sym = collate_symmetry([crystal.symmetry])
        frac = torch.as_tensor(crystal.frac)
        assert symmetry_error(frac, sym).max() < 1e-10
        assert (
            lattice_violation(torch.as_tensor(crystal.lattice)[None], torch.tensor([n])).max()
            < 1e-9
        )
        for rep, letter in zip(crystal.representatives, crystal.template.letters):
            assert locate_on_wyckoff(rep[None], wyckoff_position(n, letter))[1][0] < 1e-10
        # The layout's permutations equal those found by matching coordinates.
        group = get_space_group(n)
        for g in range(group.num_ops):
            rot = torch.tensor(group.rotations[g], dtype=torch.float64)
            images = frac @ rot.T + torch.tensor(group.translations[g])
            assert torch.equal(match_permutation(images, frac), crystal.symmetry.perm[g])
        # spglib's letters on our conventional cell (when spglib keeps the setting and origin).
        conv = crystal.to_structure()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            own = spglib.get_symmetry_dataset(
                (conv.lattice.matrix, conv.frac_coords, crystal.atom_types), symprec=1e-3
            )
        assert own.number == n
        if np.allclose(own.transformation_matrix, np.eye(3)) and np.allclose(
            own.origin_shift % 1, 0, atol=1e-6
        ):
            letters = np.array(crystal.template.letters)[crystal.symmetry.orbit.numpy()]
            assert list(own.wyckoffs) == letters.tolist()
            same_setting += 1
    assert same_setting >= len(mp20_structures) // 3


def test_textbook_structures():
    nacl = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.69), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    crystal = analyze_structure(nacl.get_primitive_structure())
    assert crystal.space_group == 225 and sorted(crystal.template.letters) == ["a", "b"]
    assert crystal.frac.shape == (8, 3) and crystal.symmetry.perm.shape == (192, 8)
    fcc = Lattice([[0, 2.715, 2.715], [2.715, 0, 2.715], [2.715, 2.715, 0]])
    si = Structure(fcc, ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])  # diamond, primitive cell
    crystal = analyze_structure(si)
    assert crystal.space_group == 227 and crystal.template.letters in (("a",), ("b",))
    assert len(crystal.frac) == 8
    mg = Structure(
        Lattice.hexagonal(3.21, 5.21), ["Mg", "Mg"], [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]]
    )
    crystal = analyze_structure(mg)
    assert crystal.space_group == 194 and crystal.template.letters in (("c",), ("d",))
    np.testing.assert_allclose(crystal.lattice[3:], [90, 90, 120])


def test_reconstruct_snaps_noisy_input_onto_constraints():
    s = reconstruct_structure(
        227, [5.4, 5.5, 5.3, 90.5, 89, 91], ["e"], [[0.301, 0.299, 0.3]], [14]
    )
    assert len(s) == 32
    np.testing.assert_allclose(s.lattice.abc, [5.4, 5.4, 5.4])
    np.testing.assert_allclose(s.lattice.angles, [90, 90, 90])
    assert analyze_structure(s, symprec=1e-3).space_group == 227


def test_bad_inputs_raise_input_error():
    overlapping = Structure(Lattice.cubic(4.0), ["Na", "Na"], [[0, 0, 0], [0, 0, 0.001]])
    with pytest.raises(InputError, match="spglib could not find the symmetry.*too close"):
        analyze_structure(overlapping)
    disordered = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}], [[0, 0, 0]])
    with pytest.raises(InputError, match="ordered"):
        analyze_structure(disordered)
    with pytest.raises(InputError, match="1 to 230"):
        reconstruct_structure(231, [4, 4, 4, 90, 90, 90], ["a"], [[0, 0, 0]], [11])
    with pytest.raises(InputError, match="does not exist"):
        reconstruct_structure(225, [4, 4, 4, 90, 90, 90], ["z"], [[0, 0, 0]], [11])
    with pytest.raises(InputError, match="representatives"):
        reconstruct_structure(225, [4, 4, 4, 90, 90, 90], ["a", "b"], [[0, 0, 0]], [11, 17])
    with pytest.raises(InputError, match="lattice"):
        reconstruct_structure(2, [4, 4, 4, 10, 10, 170], ["i"], [[0.1, 0.2, 0.3]], [11])
