"""Lattice matrices <-> lattice parameters, batched and differentiable.

Convention (pymatgen's): lattice vectors are the ROWS of the matrix, lengths in Angstrom, angles in
degrees; the matrix built from parameters puts ``c`` along z and ``a`` in the xz plane exactly as
``pymatgen.core.Lattice.from_parameters`` does, so crystals rebuilt from parameters are in a
canonical orientation.
"""

from __future__ import annotations

import torch


def lattice_params_to_matrix(params: torch.Tensor) -> torch.Tensor:
    """Lattice parameters to row-vector matrices (pymatgen's ``Lattice.from_parameters``).

    Args:
        params: ``[..., 6]`` (a, b, c in Angstrom, alpha, beta, gamma in degrees).

    Returns:
        ``[..., 3, 3]`` matrices whose rows are the lattice vectors.
    """
    a, b, c = params[..., 0], params[..., 1], params[..., 2]
    alpha, beta, gamma = torch.deg2rad(params[..., 3:6]).unbind(-1)
    cos_a, cos_b, cos_g = torch.cos(alpha), torch.cos(beta), torch.cos(gamma)
    sin_a, sin_b = torch.sin(alpha), torch.sin(beta)
    val = (cos_a * cos_b - cos_g) / (sin_a * sin_b)
    val = val.clamp(-1.0, 1.0)
    gamma_star = torch.arccos(val)
    zero = torch.zeros_like(a)
    va = torch.stack([a * sin_b, zero, a * cos_b], dim=-1)
    vb = torch.stack(
        [-b * sin_a * torch.cos(gamma_star), b * sin_a * torch.sin(gamma_star), b * cos_a], dim=-1
    )
    vc = torch.stack([zero, zero, c], dim=-1)
    return torch.stack([va, vb, vc], dim=-2)


def lattice_matrix_to_params(matrix: torch.Tensor) -> torch.Tensor:
    """Row-vector lattice matrices to parameters.

    Args:
        matrix: ``[..., 3, 3]`` rows are lattice vectors.

    Returns:
        ``[..., 6]`` (a, b, c, alpha, beta, gamma) in Angstrom and degrees.
    """
    lengths = matrix.norm(dim=-1)
    va, vb, vc = matrix.unbind(-2)

    def angle(u: torch.Tensor, v: torch.Tensor, nu: torch.Tensor, nv: torch.Tensor) -> torch.Tensor:
        cos = ((u * v).sum(-1) / (nu * nv)).clamp(-1.0, 1.0)
        return torch.rad2deg(torch.arccos(cos))

    alpha = angle(vb, vc, lengths[..., 1], lengths[..., 2])
    beta = angle(va, vc, lengths[..., 0], lengths[..., 2])
    gamma = angle(va, vb, lengths[..., 0], lengths[..., 1])
    return torch.cat([lengths, torch.stack([alpha, beta, gamma], dim=-1)], dim=-1)


def lattice_volume(params: torch.Tensor) -> torch.Tensor:
    """Cell volume in cubic Angstrom.

    Args:
        params: ``[..., 6]`` lattice parameters.

    Returns:
        ``[...]`` volumes.
    """
    return torch.linalg.det(lattice_params_to_matrix(params)).abs()
