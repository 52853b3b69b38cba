"""CDVAE structural and compositional validity on known cases."""

from __future__ import annotations

import pytest
import smact
from pymatgen.core import Composition, Lattice, Structure

from crystalflow.errors import InputError
from crystalflow.metrics.validity import (
    CDVAE_METALS,
    is_valid,
    min_interatomic_distance,
    smact_validity,
    structure_validity,
)

from .conftest import perovskite_srtio3, zincblende_gaas


def test_rocksalt_nacl_is_valid(nacl):
    assert structure_validity(nacl)
    assert smact_validity(nacl.composition)
    assert is_valid(nacl)


def test_two_atoms_at_0p3_angstrom_are_invalid():
    s = Structure(Lattice.cubic(6.0), ["Na", "Cl"], [[0, 0, 0], [0.3 / 6.0, 0, 0]], coords_are_cartesian=False)
    assert min_interatomic_distance(s) == pytest.approx(0.3)
    assert not structure_validity(s)
    assert not is_valid(s)


def test_close_contact_through_periodic_image_is_invalid():
    # 0.2 A apart only across the cell boundary
    s = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0.01, 0.5, 0.5], [0.97, 0.5, 0.5]])
    assert min_interatomic_distance(s) == pytest.approx(0.2)
    assert not structure_validity(s)


def test_tiny_volume_is_invalid():
    s = Structure(Lattice.cubic(0.4), ["Na"], [[0, 0, 0]])
    assert s.volume < 0.1
    assert not structure_validity(s)


def test_cutoff_is_inclusive():
    s = Structure(Lattice.cubic(10.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    assert structure_validity(s, cutoff=0.5)
    assert not structure_validity(s, cutoff=0.51)


@pytest.mark.parametrize(
    "formula, expected",
    [
        ("NaCl", True),
        ("NaCl2", False),
        ("Fe2O3", True),
        ("SrTiO3", True),
        ("LiFePO4", True),
        ("CuZn", True),  # all metals: an alloy
        ("Si", True),  # a single element
        ("O2", True),
        ("Na2Cl2", True),  # reduced by gcd
        ("NaO3", False),
        ("CO", True),
        ("HeO", False),  # no SMACT oxidation states for He
    ],
)
def test_smact_validity_known_cases(formula, expected):
    assert smact_validity(formula) is expected
    assert smact_validity(Composition(formula)) is expected


def test_smact_validity_rejects_bad_input():
    with pytest.raises(InputError):
        smact_validity("Xx2")
    with pytest.raises(InputError):
        smact_validity(Composition({"Na": 0.5, "Cl": 0.25}))


def test_smact_validity_switches():
    # Na2Cl is neutral only as Na(-1)2 Cl(+2): charge balance passes, the Pauling test rejects it
    assert not smact_validity("Na2Cl")
    assert smact_validity("Na2Cl", use_pauling_test=False)
    # CuZn has no neutral combination of SMACT oxidation states: valid only as an alloy
    assert smact_validity("CuZn", include_alloys=True)
    assert not smact_validity("CuZn", include_alloys=False)


def test_metal_list_matches_installed_smact():
    assert CDVAE_METALS == set(smact.metals)


def test_example_structures_valid():
    for s in (perovskite_srtio3(), zincblende_gaas()):
        assert is_valid(s)
