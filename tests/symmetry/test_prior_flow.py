"""Symmetric prior and flows: samples are valid orbits, Euler flows stay on Wyckoff subspaces."""

from __future__ import annotations

import numpy as np
import torch

from crystalflow.symmetry import (
    expand_orbits,
    group_average_vectors,
    lattice_violation,
    project_lattice,
    project_lattice_tangent,
    sample_symmetric_prior,
    symmetry_error,
    wrap_frac,
    wyckoff_position,
)
from crystalflow.symmetry.wyckoff import locate_on_wyckoff

from ._helpers import groups_per_system, random_template

GROUPS = groups_per_system(seed=3, per_system=2)


def _templates(seed: int):
    rng = np.random.default_rng(seed)
    return [random_template(n, rng, max_atoms=100) for n in GROUPS]


def _representative_distance(frac: torch.Tensor, templates, sym) -> float:
    """Largest fractional distance of an orbit's first atom from its Wyckoff subspace W u + b."""
    first = torch.ones(len(sym.orbit), dtype=torch.bool)
    first[1:] = sym.orbit[1:] != sym.orbit[:-1]
    reps = frac[first].numpy()
    letters = [(t.space_group, x) for t in templates for x in t.letters]
    return max(
        float(locate_on_wyckoff(rep[None], wyckoff_position(n, x))[1][0])
        for rep, (n, x) in zip(reps, letters)
    )


def test_prior_samples_are_full_orbits_without_duplicates():
    templates = _templates(0)
    sample = sample_symmetric_prior(
        templates, torch.Generator().manual_seed(0), dtype=torch.float64
    )
    sym = sample.symmetry
    assert sample.num_atoms.tolist() == [t.num_atoms for t in templates]
    assert sample.space_group.tolist() == [t.space_group for t in templates]
    assert ((sample.frac >= 0) & (sample.frac < 1)).all()
    assert symmetry_error(sample.frac, sym).max() < 1e-12
    assert _representative_distance(sample.frac, templates, sym) < 1e-12
    for b, t in enumerate(templates):
        x = sample.frac[sample.batch == b]
        d = x[:, None] - x[None]
        d = (d - torch.round(d)).abs().amax(-1) + torch.eye(len(x), dtype=x.dtype)
        assert d.min() > 1e-6, f"duplicate atoms in crystal of group {t.space_group}"
        counts = torch.bincount(sample.atom_types[sample.batch == b], minlength=119)
        assert {z: int(counts[z]) for z in t.composition} == t.composition
    # Same generator seed, same sample; orbit permutations are proper permutations.
    again = sample_symmetric_prior(templates, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(again.frac, sample.frac)
    assert torch.equal(
        torch.bincount(sym.entry_src, minlength=len(sym.orbit)),
        torch.bincount(sym.entry_dst, minlength=len(sym.orbit)),
    )


def test_prior_is_uniform_on_the_subspace():
    """The free parameter z of 4e (0, 0, z) in I4/mmm is uniform on [0, 1)."""
    from crystalflow.symmetry import WyckoffTemplate

    templates = [WyckoffTemplate(139, ("e",), (1,))] * 4000
    sample = sample_symmetric_prior(
        templates, torch.Generator().manual_seed(1), dtype=torch.float64
    )
    z = sample.frac[::4, 2]  # representatives (first atom of each crystal)
    hist = torch.histc(z, bins=10, min=0, max=1)
    assert hist.min() > 320 and hist.max() < 480
    assert (sample.frac[::4, :2] == 0).all()


def test_euler_flow_with_averaged_field_stays_on_wyckoff_subspaces_and_family():
    templates = _templates(1)
    gen = torch.Generator().manual_seed(2)
    sample = sample_symmetric_prior(templates, gen, dtype=torch.float64)
    sym = sample.symmetry
    x = sample.frac
    groups = sample.space_group
    lengths = 3 + 4 * torch.rand(len(templates), 3, generator=gen, dtype=torch.float64)
    angles = 75 + 30 * torch.rand(len(templates), 3, generator=gen, dtype=torch.float64)
    lattice = project_lattice(torch.cat([lengths, angles], 1), groups)
    dt = 0.05
    for _ in range(20):
        v = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        x = wrap_frac(x + dt * group_average_vectors(v, sym))
        u = torch.randn(lattice.shape, generator=gen, dtype=torch.float64)
        lattice = lattice + dt * project_lattice_tangent(u, groups)
        assert symmetry_error(x, sym).max() < 1e-10
        assert _representative_distance(x, templates, sym) < 1e-10
        assert lattice_violation(lattice, groups).max() < 1e-10
    # The final atoms are still the expansion of their representatives.
    first = torch.ones(len(sym.orbit), dtype=torch.bool)
    first[1:] = sym.orbit[1:] != sym.orbit[:-1]
    d = expand_orbits(x[first], sym) - x
    assert (d - torch.round(d)).abs().max() < 1e-10
    # In float32 the drift stays at rounding level too.
    x32 = sample.frac.float()
    for _ in range(20):
        x32 = wrap_frac(
            x32 + dt * group_average_vectors(torch.randn(x32.shape, generator=gen), sym)
        )
    assert symmetry_error(x32, sym).max() < 1e-5
