"""Wasserstein distances, space-group metrics, d_sg and Wyckoff templates on known cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystalflow.metrics.distribution import wasserstein_density, wasserstein_num_elements
from crystalflow.metrics.symmetry import (
    d_sg,
    fraction_above_p1,
    spacegroup_histogram,
    symmetry_info,
    symmetry_metrics,
)

from .conftest import bcc_fe, cscl_nacl, perovskite_srtio3, rocksalt_nacl, zincblende_gaas


def test_identical_sets_have_zero_distances(small_set):
    assert wasserstein_density(small_set, small_set) == pytest.approx(0.0, abs=1e-12)
    assert wasserstein_num_elements(small_set, small_set) == pytest.approx(0.0, abs=1e-12)
    m = symmetry_metrics(small_set, small_set, progress=False)
    assert m.d_sg == pytest.approx(0.0, abs=1e-12)


def test_wasserstein_known_values():
    a = rocksalt_nacl()
    b = rocksalt_nacl(a=5.69 * 2 ** (1 / 3))  # twice the volume: half the density
    assert wasserstein_density([a], [b]) == pytest.approx(a.density / 2, rel=1e-6)
    # number of elements: {2} vs {1}: distance 1
    assert wasserstein_num_elements([a], [bcc_fe()]) == pytest.approx(1.0)
    assert math.isnan(wasserstein_density([], [a]))


def test_spacegroups_of_textbook_structures():
    assert symmetry_info(rocksalt_nacl()).spacegroup == 225
    assert symmetry_info(cscl_nacl()).spacegroup == 221
    assert symmetry_info(zincblende_gaas()).spacegroup == 216
    assert symmetry_info(bcc_fe()).spacegroup == 229
    assert symmetry_info(perovskite_srtio3()).spacegroup == 221


def test_templates_ignore_elements_and_cell_choice():
    nacl, kbr = rocksalt_nacl(), rocksalt_nacl()
    kbr.replace_species({"Na": "K", "Cl": "Br"})
    assert symmetry_info(nacl).template == symmetry_info(kbr).template == (225, ("a", "b"))
    assert symmetry_info(nacl.get_primitive_structure()).template == symmetry_info(nacl).template
    # CsCl-type NaCl and cubic perovskite share the space group but not the template
    assert symmetry_info(cscl_nacl()).template != symmetry_info(perovskite_srtio3()).template


def test_p1_structure():
    rng = np.random.default_rng(0)
    s = Structure(Lattice.from_parameters(4.1, 5.3, 6.2, 81, 97, 103), ["Na", "Cl", "O"], rng.random((3, 3)))
    info = symmetry_info(s)
    assert info.spacegroup == 1
    assert info.wyckoffs == ("a", "a", "a")
    assert fraction_above_p1([1, 225, 1, 14]) == pytest.approx(0.5)


def test_d_sg_bounds_and_value():
    assert d_sg([1, 2, 3], [1, 2, 3]) == 0.0
    assert d_sg([1, 1], [225]) == pytest.approx(1.0)
    # p = (1/2, 1/2), q = (1, 0): JSD = 1 - (3/4) log2(3) + ... computed explicitly
    p, q = np.array([0.5, 0.5]), np.array([1.0, 0.0])
    m = (p + q) / 2
    kl = lambda x, y: sum(a * np.log2(a / b) for a, b in zip(x, y) if a > 0)  # noqa: E731
    expected = math.sqrt(0.5 * kl(p, m) + 0.5 * kl(q, m))
    assert d_sg([1, 2], [1]) == pytest.approx(expected)
    assert spacegroup_histogram([1, 230, 230]).sum() == 3
    with pytest.raises(ValueError):
        spacegroup_histogram([231])


def test_symmetry_metrics_novel_templates():
    samples = [rocksalt_nacl(), cscl_nacl(), zincblende_gaas()]
    train = [rocksalt_nacl()]
    m = symmetry_metrics(samples, samples, train=train, progress=False)
    assert m.num_templates == 3
    assert m.num_novel_templates == 2
    assert m.frac_above_p1 == 1.0
    assert m.spacegroup_counts == {225: 1, 221: 1, 216: 1}
