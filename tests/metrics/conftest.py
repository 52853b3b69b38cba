"""Shared crystals for the metrics tests: small textbook structures built in code."""

from __future__ import annotations

import functools

import pytest
from pymatgen.core import Lattice, Structure


@functools.lru_cache(maxsize=None)
def _from_spacegroup(sg: str, a: float, species: tuple, coords: tuple) -> Structure:
    return Structure.from_spacegroup(sg, Lattice.cubic(a), list(species), [list(c) for c in coords])


def rocksalt_nacl(a: float = 5.69) -> Structure:
    """Conventional rock-salt NaCl (Fm-3m, 8 atoms)."""
    return _from_spacegroup("Fm-3m", a, ("Na", "Cl"), ((0, 0, 0), (0.5, 0.5, 0.5))).copy()


def cscl_nacl(a: float = 3.45) -> Structure:
    """NaCl in the CsCl structure (Pm-3m, 2 atoms): a different polymorph of rock salt."""
    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def zincblende_gaas(a: float = 5.65) -> Structure:
    """Zinc-blende GaAs (F-43m)."""
    return _from_spacegroup("F-43m", a, ("Ga", "As"), ((0, 0, 0), (0.25, 0.25, 0.25))).copy()


def bcc_fe(a: float = 2.87) -> Structure:
    """Body-centred cubic iron (Im-3m), conventional cell."""
    return _from_spacegroup("Im-3m", a, ("Fe",), ((0, 0, 0),)).copy()


def perovskite_srtio3(a: float = 3.905) -> Structure:
    """Cubic perovskite SrTiO3 (Pm-3m)."""
    return Structure(
        Lattice.cubic(a),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


@pytest.fixture
def nacl() -> Structure:
    return rocksalt_nacl()


@pytest.fixture
def nacl_cscl() -> Structure:
    return cscl_nacl()


@pytest.fixture
def small_set() -> list[Structure]:
    """Five different crystals."""
    return [rocksalt_nacl(), cscl_nacl(), zincblende_gaas(), bcc_fe(), perovskite_srtio3()]
