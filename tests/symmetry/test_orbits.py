"""The batched torch orbit mathematics (:mod:`crystalflow.symmetry.orbits`) agrees with its numpy
twins in :mod:`crystalflow.symmetry.wyckoff`, and drift removal keeps fields equivariant."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystalflow.symmetry import (
    collate_symmetry,
    crystal_mean,
    crystal_symmetry,
    expand_orbits,
    group_average_vectors,
    locate_on_orbits,
    orbit_parameters,
    remove_drift,
    wyckoff_points,
    wyckoff_position,
)
from crystalflow.testing import assert_group_equivariant
from crystalflow.symmetry.wyckoff import locate_on_wyckoff

from ._helpers import groups_per_system, random_template


def _batch(seed: int):
    rng = np.random.default_rng(seed)
    templates = [random_template(n, rng, max_atoms=96) for n in groups_per_system(seed, per_system=1)]
    return templates, collate_symmetry([crystal_symmetry(t) for t in templates])


def _positions(templates):
    """The Wyckoff position of every orbit of the batch, in orbit order."""
    return [wyckoff_position(t.space_group, x) for t in templates for x in t.letters]


def _wrapped(d: np.ndarray) -> np.ndarray:
    return d - np.round(d)


@pytest.mark.parametrize("seed", [0, 1])
def test_wyckoff_points_match_the_numpy_positions(seed):
    templates, sym = _batch(seed)
    u = torch.rand(sym.orbit_size.shape[0], 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    got = wyckoff_points(u, sym).numpy()
    want = np.stack([wp.point(u[o, : wp.dof].numpy()) for o, wp in enumerate(_positions(templates))])
    assert np.abs(_wrapped(got - want)).max() < 1e-12


@pytest.mark.parametrize("seed", [0, 1])
def test_locate_on_orbits_matches_locate_on_wyckoff(seed):
    """Points on the subspaces (shifted by lattice vectors) and random points off them: the same
    squared distance, the same parameters on the subspace, the same nearest point off it."""
    templates, sym = _batch(seed)
    positions = _positions(templates)
    g = torch.Generator().manual_seed(10 + seed)
    m = sym.orbit_size.shape[0]
    u = torch.rand(m, 3, generator=g, dtype=torch.float64)
    shift = torch.randint(-1, 2, (m, 3), generator=g).double()
    on = wyckoff_points(u, sym) + shift
    off = torch.rand(m, 3, generator=g, dtype=torch.float64)
    for points in (on, off):
        got_u, got_d2 = locate_on_orbits(points, sym)
        for o, wp in enumerate(positions):
            want_u, want_d = locate_on_wyckoff(points[o].numpy(), wp)
            assert abs(float(got_d2[o]) - float(want_d[0]) ** 2) < 1e-10
            assert np.abs(_wrapped(wp.point(got_u[o, : wp.dof].numpy()) - wp.point(want_u[0]))).max() < 1e-9
            assert float(got_u[o, wp.dof:].abs().sum()) == 0.0
    assert float(locate_on_orbits(on, sym)[1].max()) < 1e-20
    recovered = wyckoff_points(orbit_parameters(on, sym), sym)
    assert float(_wrapped((recovered - on).numpy()).__abs__().max()) < 1e-12


def test_remove_drift_keeps_an_equivariant_field_equivariant_and_mean_free():
    templates, sym = _batch(3)
    g = torch.Generator().manual_seed(0)
    v = group_average_vectors(torch.randn(int(sym.num_atoms.sum()), 3, generator=g, dtype=torch.float64), sym)
    w = remove_drift(v, sym)
    assert float(crystal_mean(w, sym).abs().max()) < 1e-12
    assert_group_equivariant(w, sym, atol=1e-12, what="drift-free field")
    # crystal_mean is the plain per-crystal mean
    loop = torch.stack([v[sym.batch == b].mean(0) for b in range(sym.num_atoms.shape[0])])
    assert torch.allclose(crystal_mean(v, sym), loop, atol=1e-14)


def test_expand_orbits_puts_the_representative_first():
    templates, sym = _batch(4)
    u = torch.rand(sym.orbit_size.shape[0], 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rep = wyckoff_points(u, sym)
    atoms = expand_orbits(rep, sym)
    first = torch.cumsum(sym.orbit_size, 0) - sym.orbit_size
    assert torch.allclose(atoms.index_select(0, first), rep, atol=1e-12)
