"""The DNG flow: per-orbit types, symmetry by construction, determinism, loss, checkpoints."""

from __future__ import annotations

import pytest
import torch

from crystalflow.checkpoint import load_checkpoint
from crystalflow.crystals.symmetric import symmetric_batch
from crystalflow.crystal_tasks.dng import Skeleton, SkeletonDistribution
from crystalflow.metrics.symmetry import symmetry_info
from crystalflow.models import build_model
from crystalflow.pretrained import dng_flow_from_checkpoint
from crystalflow.symmetry import WyckoffTemplate, crystal_symmetry, expand_orbits, symmetry_error, wyckoff_points

from .conftest import SKELETONS, tiny_flow


def test_joint_sampling_is_deterministic_under_a_seed():
    flow = tiny_flow()
    sk = [Skeleton(225, ("a", "b", "c")), Skeleton(62, ("c", "c", "c")), Skeleton(221, ("a", "b"))]
    a = flow.sample(sk, generator=torch.Generator().manual_seed(3))
    b = flow.sample(sk, generator=torch.Generator().manual_seed(3))
    c = flow.sample(sk, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.frac, b.frac) and torch.equal(a.lattice, b.lattice)
    assert torch.equal(a.atom_types, b.atom_types)
    assert not torch.equal(a.frac, c.frac)


@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_types_shared_per_orbit_and_space_group_kept(source):
    flow = tiny_flow(source=source)
    sk = [Skeleton(225, ("a", "b")), Skeleton(225, ("a", "c")), Skeleton(225, ("a", "b", "c")),
          Skeleton(62, ("c", "c", "c"))] * 6
    states = []
    res = flow.sample(sk, generator=torch.Generator().manual_seed(0),
                      callback=lambda s, t: states.append(s["types"].clone()))
    sym = res.symmetry
    # every atom of an orbit has its orbit's type, all types are allowed elements
    first = torch.cumsum(sym.orbit_size, 0) - sym.orbit_size
    assert torch.equal(res.atom_types, res.atom_types[first][sym.orbit])
    assert flow.allowed[res.atom_types].all()
    assert (states[-1] != 0).all() and (states[0] == 0).any() == (source == "mask")
    assert float(symmetry_error(res.frac.double(), sym).max()) < 1e-4
    checked = 0
    chunks = first.split(sym.num_orbits.tolist())
    for crystal, skel, chunk in zip(res.to_crystals(), sk, chunks):
        types = res.atom_types[chunk]
        if skel.space_group != 225 or skel.letters == ("a", "b", "c"):
            continue  # parameter-free layouts only: the positions alone fix Fm-3m
        if len(set(types.tolist())) == len(types):  # equal types on two orbits may raise the symmetry
            checked += 1
            assert symmetry_info(crystal.to_structure()).spacegroup == 225
    assert checked >= 5


def test_exact_layout_has_the_space_group():
    """Rock salt / fluorite layouts built by the prior machinery are found as Fm-3m by spglib."""
    from crystalflow.crystals.crystal import Crystal

    for letters, types in ((("a", "b"), (11, 17)), (("a", "c"), (20, 9))):
        lay = crystal_symmetry(WyckoffTemplate(225, letters, types))
        batch = symmetric_batch(torch.zeros(lay.num_atoms, 3), torch.tensor([[5.0, 5, 5, 90, 90, 90]]),
                                lay.atom_types, [lay])
        u = torch.zeros(len(letters), 3, dtype=torch.float64)
        frac = expand_orbits(wyckoff_points(u, batch.symmetry), batch.symmetry)
        c = Crystal(frac=frac, lattice=torch.tensor([5.0, 5, 5, 90, 90, 90], dtype=torch.float64),
                    atom_types=lay.atom_types)
        assert symmetry_info(c.to_structure()).spacegroup == 225


def test_loss_parts_and_gradients():
    flow = tiny_flow()
    flow.model.train()
    lays = [crystal_symmetry(WyckoffTemplate(225, ("a", "b"), (11, 17))),
            crystal_symmetry(WyckoffTemplate(62, ("c", "c", "c"), (12, 15, 8)))]
    sym_frac = []
    for lay in lays:
        from crystalflow.symmetry import collate_symmetry

        s = collate_symmetry([lay])
        u = torch.rand(s.orbit_size.shape[0], 3, dtype=torch.float64) * (torch.arange(3) < s.orbit_dof[:, None])
        sym_frac.append(expand_orbits(wyckoff_points(u, s), s))
    batch = symmetric_batch(torch.cat(sym_frac), torch.tensor([[5.0, 5, 5, 90, 90, 90], [5.0, 6, 7, 90, 90, 90]]),
                            torch.cat([l.atom_types for l in lays]), lays)
    out = flow.loss(batch, torch.Generator().manual_seed(0))
    assert set(out.parts) == {"frac", "lattice", "types"}
    out.total.backward()
    assert flow.model.type_head.weight.grad.abs().sum() > 0


def test_skeleton_distribution_round_trip_and_selection():
    state = SKELETONS.state_dict()
    again = SkeletonDistribution.from_state_dict(state)
    assert again == SKELETONS
    sel = SKELETONS.select(225, min_orbits=3)
    assert sel.skeletons == (Skeleton(225, ("a", "b", "c")),)
    assert SKELETONS.select(225, num_atoms=8).skeletons == (Skeleton(225, ("a", "b")),)
    draws = SKELETONS.select(225).sample(6000, torch.Generator().manual_seed(0))
    frac_ab = sum(d == Skeleton(225, ("a", "b")) for d in draws) / 6000
    assert abs(frac_ab - 3 / 6) < 0.03  # empirical frequencies given the group


def test_dngnet_warm_starts_from_sgnet_weights():
    sg = build_model("sgnet", {"hidden": 16, "layers": 1})
    dn = build_model("dngnet", {"hidden": 16, "layers": 1})
    missing, unexpected = dn.load_state_dict(sg.state_dict(), strict=False)
    assert not unexpected and sorted(missing) == ["type_head.bias", "type_head.weight"]


def test_checkpoint_round_trip(tiny_checkpoint):
    flow, dist = dng_flow_from_checkpoint(load_checkpoint(tiny_checkpoint))
    assert dist == SKELETONS
    ref = tiny_flow()
    sk = [Skeleton(225, ("a", "b"))]
    a = flow.sample(sk, generator=torch.Generator().manual_seed(0))
    b = ref.sample(sk, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a.frac, b.frac) and torch.equal(a.atom_types, b.atom_types)


def test_field_is_drift_free_in_a_polar_group():
    """P4mm: every atom on a free z line; the symmetric field has no common shift (as the target)."""
    from crystalflow.symmetry import crystal_mean
    from crystalflow.symmetry import collate_symmetry

    flow = tiny_flow()
    lay = crystal_symmetry(WyckoffTemplate(99, ("a", "b", "c"), (38, 22, 8)))
    sym = collate_symmetry([lay])
    u = torch.rand(sym.orbit_size.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    frac = expand_orbits(wyckoff_points(u * (torch.arange(3) < sym.orbit_dof[:, None]), sym), sym).float()
    z = torch.zeros(1, 6)
    types = torch.zeros(sym.orbit_size.shape[0], dtype=torch.long)  # all masked
    field, _ = flow.fields({"frac": frac, "lattice": z}, types, torch.tensor([0.3]), sym)
    assert float(field["frac"].abs().max()) > 1e-6
    assert float(crystal_mean(field["frac"], sym).abs().max()) < 1e-6
