"""The invariant network's symmetries, and the CSP flow's loss and sampling as properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystalflow.crystals import Crystal, collate
from crystalflow.crystal_tasks.csp import CSPFlow, conditions_of
from crystalflow.manifolds import LatticeChart
from crystalflow.models import CSPNet, CSPNetConfig

from .test_crystals import perovskite, triclinic


def _model() -> CSPNet:
    torch.manual_seed(0)
    return CSPNet(CSPNetConfig(hidden=32, layers=2)).double().eval()


def _inputs(crystals):
    b = collate(crystals, dtype=torch.float64)
    chart = LatticeChart.fit(b.lattice) if len(crystals) > 1 else LatticeChart(torch.zeros(6), torch.ones(6))
    x = {"frac": b.frac, "lattice": chart.to_z(b.lattice)}
    t = torch.linspace(0.2, 0.8, b.num_crystals, dtype=torch.float64)
    return b, x, t


def test_permutation_equivariance():
    model = _model()
    b, x, t = _inputs([Crystal.from_structure(triclinic()), Crystal.from_structure(perovskite())])
    out = model(x, t, conditions_of(b))
    perm = torch.tensor([2, 0, 3, 1, 8, 4, 7, 5, 6])  # within each crystal
    xp = {"frac": x["frac"][perm], "lattice": x["lattice"]}
    bp = b.replace(frac=b.frac[perm], atom_types=b.atom_types[perm])
    outp = model(xp, t, conditions_of(bp))
    assert torch.allclose(outp["frac"], out["frac"][perm], atol=1e-10)
    assert torch.allclose(outp["lattice"], out["lattice"], atol=1e-10)


def test_translation_and_periodic_image_invariance():
    model = _model()
    b, x, t = _inputs([Crystal.from_structure(triclinic()), Crystal.from_structure(perovskite())])
    out = model(x, t, conditions_of(b))
    shift = torch.tensor([0.31, -0.17, 0.52], dtype=torch.float64)
    images = torch.randint(-2, 3, x["frac"].shape).double()
    for frac in (torch.remainder(x["frac"] + shift, 1.0), x["frac"] + images):
        o = model({"frac": frac, "lattice": x["lattice"]}, t, conditions_of(b))
        assert torch.allclose(o["frac"], out["frac"], atol=1e-9)
        assert torch.allclose(o["lattice"], out["lattice"], atol=1e-9)


def test_rotating_the_cartesian_frame_leaves_the_field_unchanged():
    """A rotated copy of a structure gives the same input tensors, hence the same field."""
    model = _model()
    s = triclinic()
    q = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    rotated = Structure(Lattice(s.lattice.matrix @ q.T), s.species, s.frac_coords)
    outs = []
    for struct in (s, rotated):
        b, x, t = _inputs([Crystal.from_structure(struct, niggli=False)])
        outs.append(model(x, t, conditions_of(b)))
    assert torch.allclose(outs[0]["frac"], outs[1]["frac"], atol=1e-9)
    assert torch.allclose(outs[0]["lattice"], outs[1]["lattice"], atol=1e-9)


def test_batched_equals_separate():
    model = _model()
    cs = [Crystal.from_structure(triclinic()), Crystal.from_structure(perovskite())]
    b, x, t = _inputs(cs)
    out = model(x, t, conditions_of(b))
    for i, c in enumerate(cs):
        bi = collate([c], dtype=torch.float64)
        sel = b.batch == i
        oi = model({"frac": x["frac"][sel], "lattice": x["lattice"][i:i + 1]}, t[i:i + 1], conditions_of(bi))
        assert torch.allclose(oi["frac"], out["frac"][sel], atol=1e-10)
        assert torch.allclose(oi["lattice"], out["lattice"][i:i + 1], atol=1e-10)


def _toy_flow():
    crystals = [Crystal.from_structure(perovskite()), Crystal.from_structure(triclinic())] * 4
    b = collate(crystals, dtype=torch.float32)
    torch.manual_seed(0)
    flow = CSPFlow(CSPNet(CSPNetConfig(hidden=32, layers=2)), LatticeChart.fit(b.lattice.double()))
    return flow, b


def test_training_reduces_the_loss():
    flow, b = _toy_flow()
    opt = torch.optim.Adam(flow.model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)

    def eval_loss():
        gen = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return np.mean([float(flow.loss(b, generator=gen).total) for _ in range(8)])

    before = eval_loss()
    for _ in range(60):
        loss = flow.loss(b, generator=g)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
    after = eval_loss()
    assert set(loss.parts) == {"frac", "lattice"}
    assert after < 0.7 * before


def test_sampling_is_deterministic_under_a_seed_and_on_the_manifold():
    flow, b = _toy_flow()
    flow.model.eval()
    cond = conditions_of(b)
    s1 = flow.sample(cond, steps=5, generator=torch.Generator().manual_seed(7))
    s2 = flow.sample(cond, steps=5, generator=torch.Generator().manual_seed(7))
    s3 = flow.sample(cond, steps=5, generator=torch.Generator().manual_seed(8))
    assert torch.equal(s1.frac, s2.frac) and torch.equal(s1.lattice, s2.lattice)
    assert not torch.equal(s1.frac, s3.frac)
    assert s1.frac.min() >= 0 and s1.frac.max() < 1
    assert (s1.lattice[:, 3:] > 59).all() and (s1.lattice[:, 3:] < 121).all()
    assert (s1.lattice[:, :3] > 0).all()
    structures = [c.to_structure() for c in s1.to_crystals()]
    assert [s.composition for s in structures] == [c.to_structure().composition for c in b.to_crystals()]
