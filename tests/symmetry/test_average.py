"""Group averaging: exact equivariance, set invariance, idempotence, batched == looped."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from crystalflow.symmetry import (
    SymmetryBatch,
    crystal_symmetry,
    group_average_scalars,
    group_average_vectors,
    group_average_vectors_loop,
    sample_symmetric_prior,
    symmetrize_frac,
    symmetry_error,
)
from crystalflow.symmetry.average import group_average_vectors_entries
from crystalflow.testing import assert_group_equivariant, assert_group_invariant

from ._helpers import groups_per_system, match_permutation, random_template

GROUPS = groups_per_system(seed=0, per_system=2)


@pytest.fixture(scope="module")
def prior():
    rng = np.random.default_rng(0)
    templates = [random_template(n, rng, max_atoms=120) for n in GROUPS for _ in range(2)]
    sample = sample_symmetric_prior(
        templates, torch.Generator().manual_seed(0), dtype=torch.float64
    )
    return templates, sample


def _network(frac: torch.Tensor, batch: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A permutation-equivariant, periodic, *not* G-equivariant field ``[N, 3]``.

    A pointwise term and a message-passing term over all pairs of the same crystal, both built
    from Fourier features of fractional coordinates with fixed random weights.
    """
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(6, 3, generator=g, dtype=frac.dtype)
    w2 = torch.randn(6, 3, generator=g, dtype=frac.dtype)
    feats = torch.cat([torch.sin(2 * torch.pi * frac), torch.cos(2 * torch.pi * frac)], -1)
    messages = []
    for b in range(int(batch.max()) + 1):
        x = frac[batch == b]
        diff = x[None, :, :] - x[:, None, :]  # x_j - x_i
        pair = torch.cat([torch.sin(2 * torch.pi * diff), torch.cos(2 * torch.pi * diff)], -1)
        weight = torch.exp(-(pair[..., :3] ** 2).sum(-1))
        messages.append((weight[..., None] * (pair @ w2)).sum(1))
    return feats @ w1 + torch.cat(messages)


def test_averaged_field_is_invariant_as_a_set(prior):
    """``v_bar[sigma_g(i)] == R_g v_bar[i]`` for every entry (every crystal, operation, atom)."""
    _, sample = prior
    sym = sample.symmetry
    v = torch.randn(
        sample.frac.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    vb = group_average_vectors(v, sym)
    assert_group_equivariant(vb, sym, atol=1e-12, what="averaged field")
    with pytest.raises(AssertionError, match="group equivariance"):  # a random field is not
        assert_group_equivariant(v, sym, atol=1e-3)


def test_averaged_network_is_exactly_equivariant_under_each_operation(prior):
    """avg(f)(g.X) == R_g avg(f)(X) with the permutations of g.X recomputed from coordinates."""
    templates, sample = prior
    sym = sample.symmetry
    frac, batch = sample.frac, sample.batch
    reference = group_average_vectors(_network(frac, batch), sym)
    rng = np.random.default_rng(2)
    # One random operation per crystal, applied to that crystal's atoms.
    op_start = torch.cumsum(sym.num_ops, 0) - sym.num_ops
    pick = op_start + torch.tensor([int(rng.integers(g)) for g in sym.num_ops.tolist()])
    atom_op = pick[batch]
    moved = torch.einsum("nij,nj->ni", sym.op_rot[atom_op], frac) + sym.op_trans[atom_op]
    moved = moved - torch.floor(moved)
    # Permutations of the moved configuration, found by matching coordinates crystal by crystal.
    src = torch.empty_like(sym.entry_src)
    start = 0
    for n in sym.num_atoms.tolist():
        sel = (sym.entry_dst >= start) & (sym.entry_dst < start + n)
        dst, op = sym.entry_dst[sel], sym.entry_op[sel]
        images = torch.einsum("eij,ej->ei", sym.op_rot[op], moved[dst]) + sym.op_trans[op]
        src[sel] = start + match_permutation(images, moved[start : start + n])
        start += n
    # The pair form is precomputed from the layout's permutations, so average the moved
    # configuration with the per-entry form over its recomputed permutations.
    moved_sym = dataclasses.replace(sym, entry_src=src)
    out = group_average_vectors_entries(_network(moved, batch), moved_sym)
    expected = torch.einsum("nij,nj->ni", sym.op_rot[atom_op], reference)
    assert (out - expected).abs().max() < 1e-10 * (1 + reference.abs().max())
    # Without averaging the network is not equivariant (so the check above is not vacuous).
    raw = torch.einsum("nij,nj->ni", sym.op_rot[atom_op], _network(frac, batch))
    assert (_network(moved, batch) - raw).abs().max() > 0.1


def test_idempotent_and_batched_equals_looped(prior):
    templates, sample = prior
    sym = sample.symmetry
    v = torch.randn(
        sample.frac.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3)
    )
    vb = group_average_vectors(v, sym)
    torch.testing.assert_close(group_average_vectors(vb, sym), vb, rtol=0, atol=1e-12)
    looped = group_average_vectors_loop(v, [crystal_symmetry(t) for t in templates])
    torch.testing.assert_close(vb, looped, rtol=0, atol=1e-12)
    torch.testing.assert_close(vb, group_average_vectors_entries(v, sym), rtol=0, atol=1e-12)
    assert sym.pair_src.shape[0] < sym.entry_src.shape[0]
    # Channels: [N, C, 3] is averaged channel by channel.
    vc = torch.stack([v, 2 * v, -v], dim=1)
    torch.testing.assert_close(group_average_vectors(vc, sym), torch.stack([vb, 2 * vb, -vb], 1))


def test_float32_matches_float64_and_gradients_flow(prior):
    _, sample = prior
    sym = sample.symmetry
    v64 = torch.randn(
        sample.frac.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4)
    )
    v32 = v64.float().requires_grad_(True)
    out = group_average_vectors(v32, sym)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), group_average_vectors(v64, sym), rtol=0, atol=1e-5)
    w = torch.randn_like(out)
    (out * w).sum().backward()
    # The map is linear, so the backward pass is its adjoint: <avg v, w> = <v, grad>.
    assert torch.isfinite(v32.grad).all()
    torch.testing.assert_close((out * w).sum(), (v32 * v32.grad).sum(), rtol=1e-4, atol=1e-4)


def test_scalar_averaging_is_the_orbit_mean(prior):
    _, sample = prior
    sym = sample.symmetry
    s = torch.randn(
        sample.frac.shape[0], 5, dtype=torch.float64, generator=torch.Generator().manual_seed(5)
    )
    sb = group_average_scalars(s, sym)
    through_perms = (
        torch.zeros_like(s).index_add_(0, sym.entry_dst, s[sym.entry_src])
        * sym.atom_inv_num_ops[:, None]
    )
    torch.testing.assert_close(sb, through_perms, rtol=0, atol=1e-12)
    torch.testing.assert_close(group_average_scalars(sb, sym), sb, rtol=0, atol=1e-12)
    assert (sb[sym.entry_src] - sb[sym.entry_dst]).abs().max() < 1e-12
    assert group_average_scalars(s[:, 0], sym).shape == (s.shape[0],)


def test_symmetrize_frac_projects_onto_symmetric_configurations(prior):
    _, sample = prior
    sym, x = sample.symmetry, sample.frac
    assert symmetry_error(x, sym).max() < 1e-12
    torch.testing.assert_close(symmetrize_frac(x, sym), x, rtol=0, atol=1e-12)
    d = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    noisy = torch.remainder(x + 1e-3 * d, 1.0)
    assert symmetry_error(noisy, sym).max() > 1e-4
    fixed = symmetrize_frac(noisy, sym)
    assert symmetry_error(fixed, sym).max() < 1e-12
    # The position projection moves atoms by the averaged displacement (it is affine).
    step = fixed - x - 1e-3 * group_average_vectors(d, sym)
    assert (step - torch.round(step)).abs().max() < 1e-12


def test_device_agnostic_on_meta():
    """No hidden CPU tensors: everything runs on the 'meta' device when the inputs are there."""
    rng = np.random.default_rng(7)
    sample = sample_symmetric_prior([random_template(n, rng) for n in (14, 166, 227)])
    sym: SymmetryBatch = sample.symmetry.to("meta")
    v = torch.empty(sample.frac.shape, device="meta")
    assert group_average_vectors(v, sym).device.type == "meta"
    assert group_average_scalars(v[:, 0], sym).device.type == "meta"
    assert symmetrize_frac(v, sym).device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_cuda_matches_cpu(prior):
    _, sample = prior
    v = torch.randn(sample.frac.shape, dtype=torch.float64)
    out = group_average_vectors(v.cuda(), sample.symmetry.to("cuda"))
    torch.testing.assert_close(out.cpu(), group_average_vectors(v, sample.symmetry))


def test_averaged_scalars_are_invariant(prior):
    """``s_bar[sigma_g(i)] == s_bar[i]``: averaged per-atom scalars are constant on orbits."""
    _, sample = prior
    sym = sample.symmetry
    s = torch.randn(sample.frac.shape[0], 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    assert_group_invariant(group_average_scalars(s, sym), sym, atol=1e-12, what="averaged scalars")
    with pytest.raises(AssertionError, match="group invariance"):
        assert_group_invariant(s, sym, atol=1e-3)
