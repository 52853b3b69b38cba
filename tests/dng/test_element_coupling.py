"""Coupled orbit types: a drawn number of distinct elements per crystal (skeletons.element_budget_mask)."""

from __future__ import annotations

import pytest
import torch

from crystalflow.crystal_tasks.dng import Skeleton, SkeletonDistribution, element_budget_mask
from crystalflow.models.dngnet import MASK_TOKEN
from crystalflow.symmetry import WyckoffTemplate

from .conftest import ALLOWED_Z, SKELETONS, tiny_flow


def test_histograms_from_templates_round_trip_and_selection():
    templates = [WyckoffTemplate(225, ("a", "b"), (11, 17)), WyckoffTemplate(225, ("b", "a"), (29, 29)),
                 WyckoffTemplate(225, ("a", "b"), (3, 8)), WyckoffTemplate(62, ("c", "c", "c"), (3, 8, 8))]
    dist = SkeletonDistribution.from_templates(templates)
    rock = dist.skeletons.index(Skeleton(225, ("a", "b")))
    assert dist.counts[rock] == 3 and dist.element_counts[rock] == (1, 2)  # one unary, two binaries
    assert dist.element_counts[dist.skeletons.index(Skeleton(62, ("c", "c", "c")))] == (0, 1, 0)
    again = SkeletonDistribution.from_state_dict(dist.state_dict())
    assert again == dist
    assert dist.select(space_group=62).element_counts == ((0, 1, 0),)
    # older checkpoints record no histograms: still readable, nothing to draw from
    old = SkeletonDistribution.from_state_dict(
        {k: v for k, v in dist.state_dict().items() if k != "element_counts"})
    assert old.element_counts is None
    with pytest.raises(ValueError):
        old.sample_element_counts(list(old.skeletons))


def test_drawn_counts_follow_the_histograms():
    dist = SkeletonDistribution((Skeleton(62, ("c", "c", "c")),), (5,), ((1, 3, 0),))
    k = dist.sample_element_counts([dist.skeletons[0]] * 4000, torch.Generator().manual_seed(0))
    assert set(k.tolist()) <= {1, 2}  # a zero bin is never drawn
    assert abs(float((k == 2).double().mean()) - 0.75) < 0.03


def test_budget_mask_rules():
    m = MASK_TOKEN
    orbit_batch = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    types = torch.tensor([8, m, m, 8, 3, m, m, m])
    mask = element_budget_mask(types, orbit_batch, torch.tensor([1, 2, 2]), 20)
    # crystal 0 holds its one element: only O (8)
    assert mask[1].nonzero().flatten().tolist() == [8]
    # crystal 1 already has two elements: only those
    assert mask[5].nonzero().flatten().tolist() == [3, 8]
    # crystal 2 needs two elements on two masked orbits: anything (nothing used yet) ...
    assert bool(mask[6].all())
    # ... and once one is drawn, the last masked orbit must bring a new element
    types2 = torch.tensor([8, m, m, 8, 3, m, 12, m])
    mask2 = element_budget_mask(types2, orbit_batch, torch.tensor([1, 2, 2]), 20)
    assert not bool(mask2[7, 12]) and bool(mask2[7, 3])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_coupled_sampling_reaches_the_requested_count(k):
    flow = tiny_flow()
    skeletons = [Skeleton(62, ("c", "c", "c"))] * 24  # three orbits
    out = flow.sample(skeletons, steps=16, generator=torch.Generator().manual_seed(1),
                      num_elements=torch.full((24,), k))
    sym = out.symmetry
    counts = [len(set(out.atom_types[sym.batch == i].tolist())) for i in range(24)]
    # orbits unmasked in one step are drawn independently, so most, not all, reach k exactly
    assert sum(c == k for c in counts) >= 20, counts
    assert set(out.atom_types.tolist()) <= set(ALLOWED_Z)


def test_independent_sampling_is_unchanged_without_a_budget():
    flow = tiny_flow()
    sk = list(SKELETONS.skeletons)
    a = flow.sample(sk, steps=8, generator=torch.Generator().manual_seed(3))
    b = flow.sample(sk, steps=8, generator=torch.Generator().manual_seed(3), num_elements=None)
    assert torch.equal(a.atom_types, b.atom_types) and torch.equal(a.frac, b.frac)
