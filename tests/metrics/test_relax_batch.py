"""Batched CHGNet relaxation (metrics.relax_batch) against CHGNet's own one-by-one StructOptimizer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystalflow.metrics.energy import relax, relax_many
from crystalflow.metrics.relax_batch import relax_batch

from .conftest import rocksalt_nacl

STEPS = 60
FMAX = 0.05

pytestmark = pytest.mark.usefixtures("one_thread")  # two threads crawl beside a training run


def _rattled(s: Structure, sigma: float, seed: int) -> Structure:
    rng = np.random.default_rng(seed)
    s = s.copy()
    for i in range(len(s)):
        s.translate_sites([i], rng.normal(0.0, sigma, 3), frac_coords=False, to_unit_cell=False)
    return s


def perturbed_nacl() -> Structure:
    """Primitive rock salt, compressed and rattled by 0.1 A (2 atoms)."""
    return _rattled(rocksalt_nacl(5.5).get_primitive_structure(), 0.1, seed=0)


def distorted_srtio3() -> Structure:
    """Perovskite with an orthorhombic-ish, slightly monoclinic cell and an off-centre Ti (5 atoms)."""
    lattice = Lattice.from_parameters(3.95, 3.90, 3.85, 90, 91, 90)
    coords = [[0, 0, 0], [0.5, 0.5, 0.52], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return Structure(lattice, ["Sr", "Ti", "O", "O", "O"], coords)


def strained_si() -> Structure:
    """Primitive diamond Si with a (3, -2, 1) % strained cell, rattled by 0.05 A (2 atoms)."""
    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]]).get_primitive_structure()
    si.apply_strain([0.03, -0.02, 0.01])
    return _rattled(si, 0.05, seed=1)


@pytest.fixture(scope="module")
def cases() -> list[Structure]:
    return [perturbed_nacl(), distorted_srtio3(), strained_si()]


@pytest.fixture(scope="module")
def one_by_one(cases):
    return [relax(s, steps=STEPS, fmax=FMAX) for s in cases]


@pytest.fixture(scope="module")
def batched(cases):
    return relax_batch(cases, steps=STEPS, fmax=FMAX, progress=False)


def test_batched_matches_ase_path(cases, one_by_one, batched):
    for start, ref, got in zip(cases, one_by_one, batched):
        assert ref.error is None and got.error is None
        assert abs(got.energy_per_atom - ref.energy_per_atom) < 5e-3  # eV/atom
        assert abs(got.initial_energy_per_atom - ref.initial_energy_per_atom) < 1e-5
        assert abs(got.structure.volume / ref.structure.volume - 1.0) < 0.01
        assert got.energy_per_atom < got.initial_energy_per_atom
        assert got.converged == ref.converged
        assert abs(got.steps - ref.steps) <= 2  # same FIRE path up to float32 round-off
        assert got.structure.composition == start.composition
        assert got.structure.site_properties["magmom"] and len(got.structure) == len(start)


def test_cell_relaxes_and_converges(cases, batched):
    for start, got in zip(cases, batched):
        assert got.converged and 0 < got.steps < STEPS
    spread = [max(s.lattice.abc) - min(s.lattice.abc) for s in (cases[2], batched[2].structure)]
    assert spread[1] < 0.6 * spread[0]  # the strained Si cell relaxes back towards the cubic one


def test_minimum_stays_put(batched):
    again = relax_batch([r.structure for r in batched], steps=STEPS, fmax=0.1, progress=False)
    for first, second in zip(batched, again):
        assert second.converged and second.steps <= 3
        assert second.energy_per_atom <= first.energy_per_atom + 1e-5
        assert abs(second.structure.volume - first.structure.volume) < 1e-3 * first.structure.volume


def test_result_independent_of_batch_company(cases, batched):
    a, b, c = cases
    alone = relax_batch([a], steps=STEPS, fmax=FMAX, progress=False)[0]
    rolling = relax_batch([b, c, a], steps=STEPS, fmax=FMAX, batch_size=2, progress=False)
    for got in (alone, rolling[2]):
        assert abs(got.energy_per_atom - batched[0].energy_per_atom) < 1e-4
        assert abs(got.structure.volume / batched[0].structure.volume - 1.0) < 1e-3
    assert abs(rolling[0].energy_per_atom - batched[1].energy_per_atom) < 1e-4


def test_fixed_cell_static_and_failures(cases):
    nacl = cases[0]
    fixed = relax_batch([nacl], steps=20, fmax=FMAX, relax_cell=False, progress=False)[0]
    ref = relax(nacl, steps=20, fmax=FMAX, relax_cell=False)
    assert np.allclose(fixed.structure.lattice.matrix, nacl.lattice.matrix)
    assert abs(fixed.energy_per_atom - ref.energy_per_atom) < 5e-3
    overlap = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0, 0, 0]])
    disordered = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    bad, static, mixed = relax_batch([overlap, nacl, disordered], steps=0, progress=False)
    assert static.steps == 0 and not static.converged and static.error is None
    assert static.energy_per_atom == static.initial_energy_per_atom
    for failed in (bad, mixed):
        assert failed.error is not None and math.isnan(failed.energy_per_atom) and not failed.converged
    assert "ordered structures" in mixed.error


def test_relax_many_switch(cases, one_by_one, batched):
    via_many = relax_many(cases[:2], steps=STEPS, fmax=FMAX, progress=False)
    assert [r.energy_per_atom for r in via_many] == pytest.approx([r.energy_per_atom for r in batched[:2]], abs=1e-4)
    old = relax_many(cases[:1], steps=STEPS, fmax=FMAX, progress=False, batched=False)
    assert old[0].energy_per_atom == one_by_one[0].energy_per_atom
    with pytest.raises(ValueError, match="batch_size"):
        relax_batch(cases, batch_size=0)


def collapsed_cells() -> list[Structure]:
    """3-atom cells CHGNet's graph builder cannot cope with: one lattice vector of 0.01 A
    (0.16 A^3) and three nearly coplanar vectors (1e-3 A^3). Before the guard, relax_batch ran
    out of 24 GB on the first and had not finished the second after 150 s."""
    coords = [[0, 0, 0], [0.5, 0.5, 0.0], [0.25, 0.75, 0.5]]
    thin = Structure(Lattice([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 0.01]]), ["Na", "Cl", "Cl"], coords)
    flat = Structure(Lattice([[4.0, 0, 0], [0, 4.0, 0], [2.0, 2.0, 1e-3 / 16]]), ["Na", "Cl", "Cl"], coords)
    return [thin, flat]


@pytest.fixture
def graph_spy(monkeypatch):
    """Volumes per atom of the cells CHGNet builds graphs of; a collapsed one raises instead of
    filling the memory (so the old code fails these tests quickly instead of hanging)."""
    from crystalflow.metrics.energy import MIN_VOLUME_PER_ATOM, load_chgnet

    converter = type(load_chgnet().graph_converter)  # every loaded model's converter
    real = converter.forward
    seen: list[float] = []

    def forward(self, structure, *args, **kwargs):
        seen.append(structure.volume / len(structure))
        if seen[-1] < MIN_VOLUME_PER_ATOM:
            raise AssertionError("refused by the test spy")
        return real(self, structure, *args, **kwargs)

    monkeypatch.setattr(converter, "forward", forward)
    return seen


def test_collapsed_cells_are_skipped_not_relaxed(cases, graph_spy):
    from crystalflow.metrics.energy import MIN_VOLUME_PER_ATOM, collapsed_cell, static_energies

    thin, flat = collapsed_cells()
    assert collapsed_cell(thin) and collapsed_cell(flat) and collapsed_cell(cases[0]) is None
    nacl = cases[0]
    batched = relax_batch([thin, nacl, flat], steps=5, fmax=FMAX, batch_size=2, progress=False)
    alone = [relax(s, steps=5) for s in (thin, flat)]
    energies = static_energies([thin, nacl, flat], progress=False)
    for r in (batched[0], batched[2], *alone):
        assert "collapsed cell" in r.error and math.isnan(r.energy_per_atom) and not r.converged and r.steps == 0
    assert batched[1].error is None and 0 < batched[1].steps <= 5  # the company is relaxed as usual
    assert energies[0] is None and energies[2] is None and energies[1] is not None
    assert graph_spy and min(graph_spy) >= MIN_VOLUME_PER_ATOM  # CHGNet never saw the collapsed cells
