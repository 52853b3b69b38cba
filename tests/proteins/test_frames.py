"""Frames <-> backbone atoms: round trips on real chains, ideal geometry, rigid-motion equivariance."""

from __future__ import annotations

import math

import pytest
import torch
from biotite.structure import dihedral

from crystalflow.proteins.frames import (
    ANGLE_CA_C_O, ANGLE_N_CA_C, C_N, C_O, CA_C, N_CA, atoms_from_frames, frames_from_atoms,
    kabsch_rotation, place_atom,
)
from crystalflow.proteins.io import read_backbones, split_segments

from .conftest import rigid_motion


def _angle(a, b, c):
    u, v = a - b, c - b
    return torch.acos((u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1)))


def _segments(real_files):
    return [s for f in real_files for ch in read_backbones(f) for s in split_segments(ch, min_length=20)]


def test_round_trip_on_real_chains_is_below_a_tenth_of_an_angstrom(real_files):
    """atoms -> Gram-Schmidt frames -> ideal atoms: N, CA, C RMSD < 0.1 A on every real segment;
    O (placed from the next residue's N, so it also absorbs peptide-plane deviations) < 0.25 A."""
    segs = _segments(real_files)
    assert len(segs) >= 6
    for s in segs:
        x = s.coords
        rots, trans = frames_from_atoms(x[:, 0], x[:, 1], x[:, 2])
        back = atoms_from_frames(rots, trans)
        d = (back - x).norm(dim=-1)  # [L, 4]
        assert d[:, :3].pow(2).mean().sqrt() < 0.1, s.source
        assert torch.allclose(back[:, 1], x[:, 1])  # CA is the frame origin
        o_ok = torch.isfinite(d[:-1, 3])
        assert d[:-1, 3][o_ok].pow(2).mean().sqrt() < 0.25, s.source


def test_frames_atoms_frames_is_exact(real_files):
    s = _segments(real_files)[0]
    x = s.coords
    rots, trans = frames_from_atoms(x[:, 0], x[:, 1], x[:, 2])
    ideal = atoms_from_frames(rots, trans)
    rots2, trans2 = frames_from_atoms(ideal[:, 0], ideal[:, 1], ideal[:, 2])
    assert torch.allclose(rots2, rots, atol=1e-10)
    assert torch.allclose(trans2, trans, atol=1e-10)


def test_frames_are_rotations_with_the_alphafold_axes(real_files):
    x = _segments(real_files)[0].coords
    rots, _ = frames_from_atoms(x[:, 0], x[:, 1], x[:, 2])
    eye = torch.eye(3, dtype=rots.dtype).expand_as(rots)
    assert torch.allclose(rots.transpose(-1, -2) @ rots, eye, atol=1e-10)
    assert torch.allclose(torch.det(rots), torch.ones(len(x), dtype=rots.dtype))
    # first axis along CA->C; N in the local xy-plane with positive y
    e1 = (x[:, 2] - x[:, 1]) / (x[:, 2] - x[:, 1]).norm(dim=-1, keepdim=True)
    assert torch.allclose(rots[..., 0], e1, atol=1e-10)
    n_local = torch.einsum("lji,lj->li", rots, x[:, 0] - x[:, 1])
    assert n_local[:, 2].abs().max() < 1e-9 and (n_local[:, 1] > 0).all()


def test_ideal_geometry_of_rebuilt_atoms():
    g = torch.Generator().manual_seed(0)
    from crystalflow.manifolds.so3 import random_rotations

    rots = random_rotations((2, 30), g, torch.float64)
    trans = 3.8 * torch.randn(2, 30, 3, generator=g, dtype=torch.float64)
    a = atoms_from_frames(rots, trans)
    n, ca, c, o = a.unbind(-2)
    assert torch.allclose((ca - n).norm(dim=-1), torch.full((2, 30), N_CA, dtype=torch.float64))
    assert torch.allclose((c - ca).norm(dim=-1), torch.full((2, 30), CA_C, dtype=torch.float64))
    assert torch.allclose((o - c).norm(dim=-1), torch.full((2, 30), C_O, dtype=torch.float64))
    assert torch.allclose(_angle(n, ca, c), torch.full((2, 30), ANGLE_N_CA_C, dtype=torch.float64))
    assert torch.allclose(_angle(ca, c, o), torch.full((2, 30), ANGLE_CA_C_O, dtype=torch.float64))
    # O lies in the plane of CA_i, C_i, N_{i+1}
    normal = torch.cross(ca[:, :-1] - c[:, :-1], n[:, 1:] - c[:, :-1], dim=-1)
    assert ((o[:, :-1] - c[:, :-1]) * normal).sum(-1).abs().max() < 1e-9


def test_place_atom_reproduces_bond_angle_and_torsion():
    a = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    b = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    c = torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64)
    d = place_atom(a, b, c, C_N, math.radians(116.2), math.radians(-60.0))
    assert (d - c).norm().item() == pytest.approx(C_N)
    assert _angle(b, c, d).item() == pytest.approx(math.radians(116.2))
    torsion = torch.tensor(dihedral(a.numpy(), b.numpy(), c.numpy(), d.numpy()))
    assert torsion.item() == pytest.approx(math.radians(-60.0))


def test_frames_and_atoms_are_rigid_motion_equivariant(real_files):
    x = _segments(real_files)[0].coords
    q, s = rigid_motion(1)
    moved = x @ q.T + s
    r1, t1 = frames_from_atoms(x[:, 0], x[:, 1], x[:, 2])
    r2, t2 = frames_from_atoms(moved[:, 0], moved[:, 1], moved[:, 2])
    assert torch.allclose(r2, q @ r1, atol=1e-10)
    assert torch.allclose(t2, t1 @ q.T + s, atol=1e-10)
    assert torch.allclose(atoms_from_frames(r2, t2), atoms_from_frames(r1, t1) @ q.T + s, atol=1e-9)


def test_terminal_oxygen_uses_the_mask():
    g = torch.Generator().manual_seed(2)
    from crystalflow.manifolds.so3 import random_rotations

    rots = random_rotations((1, 10), g, torch.float64)
    trans = torch.randn(1, 10, 3, generator=g, dtype=torch.float64)
    mask = torch.arange(10)[None] < 6
    padded = atoms_from_frames(rots, trans, mask)[0, :6]
    alone = atoms_from_frames(rots[:, :6], trans[:, :6])[0]
    assert torch.allclose(padded, alone)


def test_kabsch_recovers_a_rotation():
    g = torch.Generator().manual_seed(3)
    p = torch.randn(2, 40, 3, generator=g, dtype=torch.float64)
    p = p - p.mean(1, keepdim=True)
    q, _ = rigid_motion(4)
    target = p @ q.T
    r = kabsch_rotation(p, target)
    assert torch.allclose(r, q.expand(2, 3, 3), atol=1e-10)
    assert torch.allclose(torch.det(r), torch.ones(2, dtype=torch.float64))
