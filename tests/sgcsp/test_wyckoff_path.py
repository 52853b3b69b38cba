"""The Wyckoff-parameter path (:class:`crystalflow.paths.WyckoffPath`): endpoints, velocity, drift."""

from __future__ import annotations

import pytest
import torch

from crystalflow.paths import WyckoffPath
from crystalflow.symmetry import (
    collate_symmetry,
    crystal_mean,
    crystal_symmetry,
    expand_orbits,
    symmetry_error,
    wyckoff_points,
)
from crystalflow.testing import assert_group_equivariant

from .conftest import TEMPLATES


@pytest.fixture(scope="module")
def sym():
    return collate_symmetry([crystal_symmetry(t) for t in TEMPLATES])


def _params(sym, seed: int) -> torch.Tensor:
    u = torch.rand(sym.orbit_size.shape[0], 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return u * (torch.arange(3)[None, :] < sym.orbit_dof[:, None])


def _torus_dist(a: torch.Tensor, b: torch.Tensor) -> float:
    d = a - b
    return float((d - torch.round(d)).abs().max())


def test_plain_path_hits_both_endpoints_and_stays_symmetric(sym):
    u0, u1 = _params(sym, 0), _params(sym, 1)
    path = WyckoffPath(drift_free=False)
    assert _torus_dist(path.sample(u0, u1, 0.0, sym).x_t, expand_orbits(wyckoff_points(u0, sym), sym)) < 1e-12
    assert _torus_dist(path.sample(u0, u1, 1.0, sym).x_t, expand_orbits(wyckoff_points(u1, sym), sym)) < 1e-12
    t = torch.rand(len(TEMPLATES), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert float(symmetry_error(path.sample(u0, u1, t, sym).x_t, sym).max()) < 1e-10


@pytest.mark.parametrize("drift_free", [False, True])
def test_velocity_is_the_derivative_and_an_equivariant_field(sym, drift_free):
    u0, u1 = _params(sym, 3), _params(sym, 4)
    path = WyckoffPath(drift_free)
    t, h = torch.full((len(TEMPLATES),), 0.3, dtype=torch.float64), 1e-6
    a, b = path.sample(u0, u1, t, sym), path.sample(u0, u1, t + h, sym)
    d = b.x_t - a.x_t
    assert torch.allclose((d - torch.round(d)) / h, a.dx_t, atol=1e-6)
    assert_group_equivariant(a.dx_t, sym, atol=1e-12, what="path velocity")
    if drift_free:
        assert float(crystal_mean(a.dx_t, sym).abs().max()) < 1e-12


def test_drift_free_path_ends_on_the_data_translated(sym):
    """At t = 1 every atom is the data atom moved by one translation per crystal."""
    u0, u1 = _params(sym, 5), _params(sym, 6)
    end = WyckoffPath().sample(u0, u1, 1.0, sym).x_t
    data = expand_orbits(wyckoff_points(u1, sym), sym)
    d = end - data
    d = d - torch.round(d)
    shift = d.index_select(0, torch.cumsum(sym.num_atoms, 0) - sym.num_atoms).index_select(0, sym.batch)
    assert _torus_dist(d, shift) < 1e-10
