"""The symmetric prior: orbit representatives uniform on their Wyckoff subspaces, expanded to
orbits (used by the space-group conditioned flows; one implementation for batches and templates)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from crystalflow.symmetry.batch import SymmetryBatch, collate_symmetry, crystal_symmetry
from crystalflow.symmetry.orbits import expand_orbits, wyckoff_points
from crystalflow.symmetry.template import WyckoffTemplate

__all__ = ["SymmetricPrior", "sample_orbit_parameters", "sample_symmetric_prior"]


def sample_orbit_parameters(sym: SymmetryBatch, generator: torch.Generator | None = None,
                            dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The symmetric prior of a batch: free parameters uniform, orbits expanded.

    Each orbit's free parameters are uniform on ``[0, 1)^k``, which is uniform on its Wyckoff
    subspace modulo 1 (an integer linear map pushes the uniform measure of the torus to the
    uniform measure of its image); the representative is expanded with the coset operations, so
    the orbits hold no duplicate modulo 1 (almost surely).

    Args:
        sym: symmetry fields of the batch (``M`` orbits, ``N`` atoms), on the sampling device.
        generator: torch random generator (draws one ``[M, 3]`` float64 uniform tensor).
        dtype: dtype of the atoms.

    Returns:
        ``(u [M, 3] float64, zero past each orbit's dof; frac [N, 3] in [0, 1) of dtype)``.
    """
    dev = sym.space_group.device
    u = torch.rand(sym.orbit_size.shape[0], 3, generator=generator, dtype=torch.float64, device=dev)
    u = u * (torch.arange(3, device=dev)[None, :] < sym.orbit_dof[:, None])
    return u, expand_orbits(wyckoff_points(u, sym), sym).to(dtype)


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

    The batch of templates version of :func:`sample_orbit_parameters` (drawn on the CPU).

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
    frac = sample_orbit_parameters(sym, generator, dtype)[1]
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
