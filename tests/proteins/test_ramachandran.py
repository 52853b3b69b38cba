"""Backbone dihedrals, the Ramachandran region map and TM-score novelty, as properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from crystalflow.proteins.frames import (
    ANGLE_CA_C_N, ANGLE_N_CA_C, C_N, CA_C, N_CA, ideal_local_positions, place_atom,
)
from crystalflow.proteins.metrics import backbone_metrics, max_tm_to_references, novelty_tm
from crystalflow.proteins.ramachandran import (
    _grid, backbone_dihedrals, density_map, ramachandran_fractions, region_codes, threshold_map,
)

from .conftest import rigid_motion

ANGLE_C_N_CA = math.radians(121.7)


def chain_from_dihedrals(phi: float, psi: float, n: int, omega: float = 180.0) -> torch.Tensor:
    """``[n, 3, 3]`` N, CA, C of a chain with constant (phi, psi, omega) in degrees (NeRF)."""
    phi, psi, omega = (math.radians(a) for a in (phi, psi, omega))
    atoms = [ideal_local_positions(torch.float64).unbind(0)]
    for _ in range(n - 1):
        n0, ca0, c0 = atoms[-1]
        n1 = place_atom(n0, ca0, c0, C_N, ANGLE_CA_C_N, psi)
        ca1 = place_atom(ca0, c0, n1, N_CA, ANGLE_C_N_CA, omega)
        c1 = place_atom(c0, n1, ca1, CA_C, ANGLE_N_CA_C, phi)
        atoms.append((n1, ca1, c1))
    return torch.stack([torch.stack(a) for a in atoms])


@pytest.mark.parametrize("phi,psi", [(-57.0, -47.0), (-120.0, 130.0), (-75.0, 145.0)])
def test_dihedrals_of_a_built_chain_are_recovered(phi, psi):
    ang = backbone_dihedrals(chain_from_dihedrals(phi, psi, 12))
    assert ang.shape == (10, 2)
    np.testing.assert_allclose(ang, np.broadcast_to([phi, psi], ang.shape), atol=1e-3)


def test_dihedrals_are_invariant_under_rigid_motion_and_flip_under_mirroring():
    noise = torch.randn(15, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = chain_from_dihedrals(-65.0, -40.0, 15) + 0.1 * noise
    rot, shift = rigid_motion(3)
    ref = backbone_dihedrals(x)
    np.testing.assert_allclose(backbone_dihedrals(x @ rot.T + shift), ref, atol=1e-3)
    mirrored = x * torch.tensor([1.0, 1.0, -1.0], dtype=x.dtype)
    np.testing.assert_allclose(backbone_dihedrals(mirrored), -ref, atol=1e-3)


def test_helix_and_strand_are_favoured_and_eclipsed_backbone_is_outside():
    assert ramachandran_fractions([chain_from_dihedrals(-57.0, -47.0, 20)]) == (1.0, 1.0)
    assert ramachandran_fractions([chain_from_dihedrals(-120.0, 130.0, 20)]) == (1.0, 1.0)
    # phi = psi = 0 puts consecutive backbone atoms on top of each other: never observed
    assert ramachandran_fractions([chain_from_dihedrals(0.0, 0.0, 20)]) == (0.0, 0.0)
    # the left-handed (mirror) helix: a rare conformation, outside the favoured region
    assert region_codes(np.array([[-57.0, -47.0], [57.0, -47.0], [np.nan, 10.0]])).tolist() == [2, 0, -1]


def test_region_map_is_a_full_nested_grid():
    g = _grid()
    assert g.shape == (36, 36) and set(np.unique(g)) <= {0, 1, 2}
    assert 0.2 < (g == 2).mean() < (g >= 1).mean() < 0.7


def test_thresholds_enclose_the_requested_fractions():
    rng = np.random.default_rng(0)
    ang = np.concatenate([rng.normal([-63, -43], 8, (900, 2)), rng.uniform(-180, 180, (100, 2))])
    codes = threshold_map(density_map(ang), ang, (0.8, 0.95))
    idx = np.floor((ang + 180) / 10).astype(int) % 36
    c = codes[idx[:, 1], idx[:, 0]]
    assert (c == 2).mean() >= 0.8 and (c >= 1).mean() >= 0.95
    assert (codes >= 1).mean() < 0.5  # the dense helix region, not the whole plane


def test_native_chains_are_mostly_allowed(real_files):
    from crystalflow.proteins.io import read_backbones, split_segments

    segs = [s.coords for f in real_files for ch in read_backbones(f) for s in split_segments(ch, 20)]
    fav, allowed = ramachandran_fractions(segs)
    assert allowed >= 0.97 and fav >= 0.9


def test_novelty_of_a_chain_against_itself_is_one():
    helix = chain_from_dihedrals(-57.0, -47.0, 40)
    strand = chain_from_dihedrals(-120.0, 130.0, 40)
    ca_h, ca_s = helix[:, 1].numpy(), strand[:, 1].numpy()
    assert max_tm_to_references(ca_h, [ca_s, ca_h]) == pytest.approx(1.0, abs=1e-6)
    assert max_tm_to_references(ca_h, [ca_s]) < 0.5
    rot, shift = rigid_motion(5)
    assert novelty_tm([helix], [strand, helix @ rot.T + shift]) == pytest.approx(1.0, abs=1e-6)


def test_backbone_metrics_report_rama_and_novelty():
    helix = chain_from_dihedrals(-57.0, -47.0, 30)
    full = torch.cat([helix, helix[:, 1:2]], dim=1)  # a stand-in O column: [L, 4, 3]
    m = backbone_metrics([full], novelty_refs=[full])
    assert m.rama_allowed == 1.0 and m.novelty_tm == pytest.approx(1.0, abs=1e-6)
    ca_only = backbone_metrics([helix[:, 1]])
    assert math.isnan(ca_only.rama_allowed) and math.isnan(ca_only.novelty_tm)
