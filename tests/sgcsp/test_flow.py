"""Properties of the space-group conditioned flow with the real network (SGNet)."""

from __future__ import annotations

import pytest
import torch

from crystalflow.crystals.symmetric import SymmetricDataset
from crystalflow.crystal_tasks.sgcsp import sg_conditions
from crystalflow.symmetry import (
    aligned_orbit_parameters,
    collate_symmetry,
    crystal_mean,
    crystal_symmetry,
    get_space_group,
    lattice_violation,
    orbit_first_atom,
    orbit_parameters,
    symmetry_error,
)
from crystalflow.testing import assert_group_equivariant

from tests.sgcsp.conftest import TEMPLATES, make_dataset, make_flow


def test_batch_carries_symmetry(dataset: SymmetricDataset):
    b = dataset.batch(range(len(dataset)))
    assert b.symmetry is not None
    assert torch.equal(b.symmetry.num_atoms, b.num_atoms)
    assert torch.equal(b.symmetry.batch, b.batch)
    assert float(symmetry_error(b.frac.double(), b.symmetry).max()) < 1e-6


def test_orbit_parameters_recover_representatives(dataset):
    b = dataset.batch(range(len(dataset)), dtype=torch.float64)
    sym = b.symmetry
    rep = b.frac.index_select(0, orbit_first_atom(sym))
    u = orbit_parameters(rep, sym)
    back = (sym.orbit_basis * u[:, None, :]).sum(-1) + sym.orbit_offset
    d = back - rep
    assert float((d - torch.round(d)).abs().max()) < 1e-9
    assert float(u.min()) >= 0 and float(u.max()) < 1


@pytest.mark.parametrize("t", [0.0, 0.3, 0.77, 1.0])
def test_conditional_path_is_symmetric_and_hits_the_data(flow, dataset, t):
    b = dataset.batch(range(len(dataset)), dtype=torch.float64)
    sym = b.symmetry
    g = torch.Generator().manual_seed(1)
    x0 = flow.prior(sym, dtype=torch.float64, generator=g)
    x_t, target = flow.path(x0, b, torch.full((b.num_crystals,), t, dtype=torch.float64))
    assert float(symmetry_error(x_t["frac"], sym).max()) < 1e-9
    lat = flow.chart.to_params(x_t["lattice"])
    assert float(lattice_violation(lat, sym.space_group).max()) < 1e-6
    # the target velocity is an equivariant field: group averaging leaves it unchanged
    from crystalflow.symmetry import group_average_vectors

    assert torch.allclose(group_average_vectors(target["frac"], sym), target["frac"], atol=1e-9)
    # no drift: the target is mean-free per crystal

    assert float(crystal_mean(target["frac"], sym).abs().max()) < 1e-9
    if t == 1.0:
        _assert_same_crystal_up_to_polar_shift(x_t["frac"], b.frac, sym, dataset.templates)
        assert torch.allclose(lat, b.lattice, atol=1e-6)


def _wrapped(d: torch.Tensor) -> torch.Tensor:
    return d - torch.round(d)


def _assert_same_crystal_up_to_polar_shift(x1, data, sym, templates):
    """Every orbit of ``x1`` is the data orbit (as a set: atoms may be relabelled inside an orbit)
    translated by one shift per crystal that every rotation of the group fixes."""
    for c, tmpl in enumerate(templates):
        atoms = torch.nonzero(sym.batch == c).squeeze(1)
        orbit = sym.orbit[atoms]
        i0 = atoms[0]
        found = None
        for j in atoms[orbit == sym.orbit[i0]]:  # candidate shifts pair atom i0 with j
            s = _wrapped(x1[i0] - data[j])
            d = _wrapped(x1[atoms][:, None, :] - data[atoms][None, :, :] - s)  # [n, n, 3]
            same_orbit = orbit[:, None] == orbit[None, :]
            hit = ((d.abs().amax(-1) < 1e-6) & same_orbit).any(1)
            if bool(hit.all()):
                found = s
                break
        assert found is not None, tmpl
        for rot in get_space_group(tmpl.space_group).rotations:
            rot = torch.tensor(rot, dtype=torch.float64)
            assert float(_wrapped(rot @ found - found).abs().max()) < 1e-6, tmpl


@pytest.mark.parametrize("align", [False, True])
def test_both_couplings_end_on_the_data(dataset, align):
    from dataclasses import replace

    flow = make_flow(dataset=dataset)
    flow.config = replace(flow.config, align_orbits=align)
    b = dataset.batch(range(len(dataset)), dtype=torch.float64)
    x0 = flow.prior(b.symmetry, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    x1, _ = flow.path(x0, b, torch.ones(b.num_crystals, dtype=torch.float64))
    _assert_same_crystal_up_to_polar_shift(x1["frac"], b.frac, b.symmetry, dataset.templates)


def test_aligned_targets_are_orbit_points_and_never_farther(dataset):
    """The aligned coupling picks, per orbit, a point of the data orbit on the Wyckoff subspace,
    and its parameter displacement is never longer than the fixed representative's."""

    b = dataset.batch(range(len(dataset)), dtype=torch.float64)
    sym = b.symmetry
    g = torch.Generator().manual_seed(3)
    shorter = 0
    for _ in range(20):
        u0 = torch.rand(sym.orbit_size.shape[0], 3, generator=g, dtype=torch.float64)
        u0 = u0 * (torch.arange(3)[None, :] < sym.orbit_dof[:, None])
        u1 = aligned_orbit_parameters(b.frac, u0, sym)
        fixed = orbit_parameters(b.frac.index_select(0, orbit_first_atom(sym)), sym)
        point = (sym.orbit_basis @ u1.unsqueeze(-1)).squeeze(-1) + sym.orbit_offset  # [M, 3]
        for o in range(point.shape[0]):
            members = b.frac[sym.orbit == o]
            assert float(_wrapped(members - point[o]).abs().amax(-1).min()) < 1e-9

        def length(u):
            du = _wrapped(u - u0)
            return ((sym.orbit_basis @ du.unsqueeze(-1)) ** 2).sum((-1, -2))

        assert bool((length(u1) <= length(fixed) + 1e-12).all())
        shorter += int((length(u1) < length(fixed) - 1e-9).sum())
    assert shorter > 0  # the templates include orbits with several points on their subspace


def test_path_velocity_is_the_derivative_of_the_path(flow, dataset):
    """The target velocity (mean-free) is d/dt of the expanded path, for every crystal."""
    b = dataset.batch(range(len(dataset)), dtype=torch.float64)
    x0 = flow.prior(b.symmetry, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    h = 1e-6
    t = torch.full((b.num_crystals,), 0.35, dtype=torch.float64)
    xa, target = flow.path(x0, b, t)
    xb, _ = flow.path(x0, b, t + h)
    d = xb["frac"] - xa["frac"]
    d = (d - torch.round(d)) / h
    assert torch.allclose(d, target["frac"], atol=1e-5)
    assert torch.allclose((xb["lattice"] - xa["lattice"]) / h, target["lattice"], atol=1e-5)


def test_loss_is_finite_and_trains(dataset):
    flow = make_flow(dataset=dataset)
    flow.model.train()
    opt = torch.optim.Adam(flow.model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    b = dataset.batch(range(len(dataset)), dtype=torch.float64)
    losses = []
    for _ in range(3):
        out = flow.loss(b, generator=g)
        assert torch.isfinite(out.total)
        opt.zero_grad()
        out.total.backward()
        opt.step()
        losses.append(float(out.total.detach()))
    assert set(out.parts) == {"frac", "lattice"}


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_sampling_stays_on_wyckoff_subspaces_and_family_at_every_step(flow, method):
    """Started from the symmetric prior, with the real network, every state of the integration
    is exactly symmetric (no re-symmetrisation) and its lattice obeys the family constraints, with
    every solver (midpoint and RK4 combine symmetric fields at symmetric points)."""
    errors, violations = [], []
    templates = TEMPLATES
    sym = collate_symmetry([crystal_symmetry(t) for t in templates])

    def check(state, t):
        errors.append(float(symmetry_error(state["frac"], sym).max()))
        lat = flow.chart.to_params(state["lattice"])
        violations.append(float(lattice_violation(lat, sym.space_group).max()))

    out = flow.sample(templates, steps=6, method=method, symmetrize=False, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(3), callback=check)
    assert len(errors) == 6
    assert max(errors) < 1e-9, errors
    assert max(violations) < 1e-6, violations
    assert float(symmetry_error(out.frac.double(), out.symmetry).max()) < 1e-9
    # every structure is reported in its requested space group by spglib
    from crystalflow.symmetry import analyze_structure

    for c, tmpl in zip(out.to_crystals(), templates):
        s = c.to_structure()
        got = analyze_structure(s, symprec=1e-3).space_group
        assert get_space_group(got).number >= 1
        # spglib may find a supergroup for accidental special values, never a lower group
        assert len(get_space_group(got).rotations) >= len(get_space_group(tmpl.space_group).rotations)


def test_float32_sampling_with_symmetrize_has_no_drift(flow):
    f32 = make_flow()
    f32.model.float()
    sym = collate_symmetry([crystal_symmetry(t) for t in TEMPLATES])
    errs = []
    f32.sample(TEMPLATES, steps=8, symmetrize=True, generator=torch.Generator().manual_seed(0),
               callback=lambda s, t: errs.append(float(symmetry_error(s["frac"].double(), sym).max())))
    assert max(errs) < 1e-5


def test_averaged_model_field_is_equivariant(flow, dataset):
    """At a symmetric state the symmetrised field is equivariant, ``v_{sigma_g(i)} = R_g v_i`` for
    every operation ``g``, is fixed by averaging (lives on the Wyckoff tangent spaces), and equals
    frame averaging of the real network, ``1/|G| sum_g R_g^{-1} f(g.X)``, with one network call."""
    from crystalflow.symmetry import group_average_vectors

    b = dataset.batch(range(len(dataset)), dtype=torch.float64)
    sym = b.symmetry
    cond = sg_conditions(b.atom_types, sym)
    t = torch.full((b.num_crystals,), 0.4, dtype=torch.float64)
    z = flow.chart.to_z(b.lattice)
    v = flow.velocity({"frac": b.frac, "lattice": z}, t, cond)["frac"]
    assert float(v.abs().max()) > 1e-6  # not trivially zero
    assert torch.allclose(group_average_vectors(v, sym), v, atol=1e-10)
    assert_group_equivariant(v, sym, atol=1e-9, what="symmetrised model field")
    start = 0
    for tmpl in dataset.templates:
        lay = crystal_symmetry(tmpl)
        grp = get_space_group(tmpl.space_group)
        block = slice(start, start + lay.num_atoms)
        frame = torch.zeros_like(b.frac[block])
        for gi in range(grp.num_ops):
            rot = torch.tensor(grp.rotations[gi], dtype=torch.float64)
            moved = b.frac.clone()
            moved[block] = torch.remainder(b.frac[block] @ rot.T + torch.tensor(grp.translations[gi]), 1.0)
            raw = flow.model({"frac": moved, "lattice": z}, t, cond)["frac"][block]
            frame += raw @ torch.linalg.inv(rot).T
        frame = frame / grp.num_ops
        # the flow's field is the frame average with its polar drift (the mean) removed
        assert torch.allclose(frame - frame.mean(0), v[block], atol=1e-9), tmpl
        start += lay.num_atoms
