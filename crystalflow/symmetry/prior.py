"""Symmetric prior: orbit representatives uniform on their Wyckoff subspaces, expanded to orbits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from crystalflow.symmetry.average import wrap_frac
from crystalflow.symmetry.batch import SymmetryBatch, collate_symmetry, crystal_symmetry
from crystalflow.symmetry.template import WyckoffTemplate

__all__ = ["SymmetricPrior", "expand_orbits", "wyckoff_points", "sample_symmetric_prior"]


def wyckoff_points(params: torch.Tensor, sym: SymmetryBatch) -> torch.Tensor:
    """Orbit representatives ``W u + b`` (modulo 1) from free parameters.

    Args:
        params: ``[M, 3]`` free parameters ``u`` of every orbit; only the first ``k`` of each row
            are used (``W`` is zero-padded), the rest are ignored.
        sym: symmetry fields of the batch (``M`` orbits).

    Returns:
        ``[M, 3]`` representatives in ``[0, 1)``.
    """
    basis = sym.orbit_basis.to(params.dtype)
    rep = (basis * params[:, None, :]).sum(-1) + sym.orbit_offset.to(params.dtype)
    return wrap_frac(rep)


def expand_orbits(rep: torch.Tensor, sym: SymmetryBatch) -> torch.Tensor:
    """Atoms of every orbit from its representative: ``x_i = R_{c(i)} rep_{o(i)} + t_{c(i)}``.

    Args:
        rep: ``[M, 3]`` orbit representatives (on their Wyckoff subspaces).
        sym: symmetry fields of the batch.

    Returns:
        ``[N, 3]`` fractional coordinates in ``[0, 1)``, in the batch's atom order.
    """
    x = rep.index_select(0, sym.orbit)
    rot = sym.atom_rot.to(rep.dtype)
    out = (rot * x[:, None, :]).sum(-1) + sym.atom_trans.to(rep.dtype)
    return wrap_frac(out)


@dataclass(frozen=True)
class SymmetricPrior:
    """A batch of symmetric prior samples in CrystalBatch layout (lattice not included).

    Attributes:
        frac: ``[N, 3]`` fractional coordinates in ``[0, 1)``.
        atom_types: ``[N]`` long atomic numbers.
        num_atoms: ``[B]`` long.
        batch: ``[N]`` long crystal index of each atom.
        space_group: ``[B]`` long.
        symmetry: the batch's :class:`SymmetryBatch` (permutations, Wyckoff fields, operations).
    """

    frac: torch.Tensor
    atom_types: torch.Tensor
    num_atoms: torch.Tensor
    batch: torch.Tensor
    space_group: torch.Tensor
    symmetry: SymmetryBatch


def sample_symmetric_prior(
    templates: Sequence[WyckoffTemplate],
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> SymmetricPrior:
    """Sample symmetric fractional coordinates for a batch of templates.

    Each orbit's free parameters are uniform on ``[0, 1)^k``, which is uniform on its Wyckoff
    subspace modulo 1 (an integer linear map pushes the uniform measure of the torus to the
    uniform measure of its image); the representative is expanded with the coset operations, so the
    orbits hold no duplicate modulo 1 (almost surely).

    Args:
        templates: one template per crystal.
        generator: torch random generator (CPU), for reproducibility.
        dtype: dtype of ``frac``.
        device: device of every returned tensor.

    Returns:
        :class:`SymmetricPrior`.
    """
    layouts = [crystal_symmetry(t) for t in templates]
    sym = collate_symmetry(layouts)
    params = torch.rand(sym.orbit_size.shape[0], 3, generator=generator, dtype=torch.float64)
    frac = expand_orbits(wyckoff_points(params, sym), sym).to(dtype)
    if device is not None:
        sym = sym.to(device)
        frac = frac.to(device)
    return SymmetricPrior(
        frac=frac,
        atom_types=torch.cat([layout.atom_types for layout in layouts]).to(frac.device),
        num_atoms=sym.num_atoms,
        batch=sym.batch,
        space_group=sym.space_group,
        symmetry=sym,
    )
