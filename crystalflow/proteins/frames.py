"""Residue frames <-> backbone atoms: Gram-Schmidt frames and ideal backbone geometry.

A residue frame is a rotation ``R [..., 3, 3]`` and a translation ``x [..., 3]`` (the CA). Following
AlphaFold's ``rigid_from_3_points``: the first axis points from CA to C, the second is the
CA->N direction made orthogonal to the first (N lies in the local xy-plane with y > 0), the third
is their cross product; ``R``'s columns are the axes, so local coordinates map to global ones as
``R @ p + x``.

Ideal geometry (Engh & Huber 1991): N-CA 1.458 A, CA-C 1.525 A, angle N-CA-C 111.2 deg, C-N
1.329 A, C=O 1.231 A, CA-C-N 116.2 deg, CA-C-O 120.5 deg. The carbonyl O of residue i lies in the
peptide plane of CA_i, C_i and N_{i+1}; for the last residue of a chain, whose N_{i+1} does not
exist, a virtual N_{i+1} is placed with the torsion ``psi = TERMINAL_PSI``. Every function is
differentiable (used by the auxiliary atom loss) and batched over leading dimensions.
"""

from __future__ import annotations

import math

import torch

#: atom order of a backbone residue
BACKBONE_ATOMS = ("N", "CA", "C", "O")
N_CA = 1.458
CA_C = 1.525
C_N = 1.329
C_O = 1.231
ANGLE_N_CA_C = math.radians(111.2)
ANGLE_CA_C_N = math.radians(116.2)
ANGLE_CA_C_O = math.radians(120.5)
#: psi (N-CA-C-N_next torsion) assumed for the virtual next N of a chain's last residue
TERMINAL_PSI = math.radians(140.0)


def frames_from_atoms(n: torch.Tensor, ca: torch.Tensor, c: torch.Tensor,
                      eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Gram-Schmidt frames from N, CA, C positions.

    Args:
        n, ca, c: ``[..., 3]`` atom positions.

    Returns:
        ``(R [..., 3, 3], x [..., 3])`` with ``x = ca``.
    """
    v1 = c - ca
    v2 = n - ca
    e1 = v1 / v1.norm(dim=-1, keepdim=True).clamp_min(eps)
    u2 = v2 - (e1 * v2).sum(-1, keepdim=True) * e1
    e2 = u2 / u2.norm(dim=-1, keepdim=True).clamp_min(eps)
    e3 = torch.cross(e1, e2, dim=-1)
    return torch.stack([e1, e2, e3], dim=-1), ca


def ideal_local_positions(dtype: torch.dtype = torch.float64,
                          device: torch.device | str | None = None) -> torch.Tensor:
    """Local coordinates ``[3, 3]`` of N, CA, C in the residue frame."""
    n = [N_CA * math.cos(ANGLE_N_CA_C), N_CA * math.sin(ANGLE_N_CA_C), 0.0]
    return torch.tensor([n, [0.0, 0.0, 0.0], [CA_C, 0.0, 0.0]], dtype=dtype, device=device)


def place_atom(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, bond: float, angle: float,
               torsion: torch.Tensor | float) -> torch.Tensor:
    """NeRF: the point d with ``|cd| = bond``, angle ``b-c-d = angle``, torsion ``a-b-c-d``.

    Args:
        a, b, c: ``[..., 3]`` the three preceding atoms; torsion: radians, broadcastable to ``[...]``.
    """
    torsion = torch.as_tensor(torsion, dtype=a.dtype, device=a.device)
    bc = c - b
    bc = bc / bc.norm(dim=-1, keepdim=True)
    nrm = torch.cross(b - a, bc, dim=-1)
    nrm = nrm / nrm.norm(dim=-1, keepdim=True)
    m = torch.stack([bc, torch.cross(nrm, bc, dim=-1), nrm], dim=-1)
    local = torch.stack([
        -bond * math.cos(angle) * torch.ones_like(torsion),
        bond * math.sin(angle) * torch.cos(torsion),
        bond * math.sin(angle) * torch.sin(torsion),
    ], dim=-1)
    return c + (m @ local.expand(c.shape).unsqueeze(-1)).squeeze(-1)


def place_oxygen(ca: torch.Tensor, c: torch.Tensor, n_next: torch.Tensor) -> torch.Tensor:
    """Carbonyl O ``[..., 3]`` in the plane of CA, C, N_next, opposite N_next."""
    a = ca - c
    a = a / a.norm(dim=-1, keepdim=True)
    b = n_next - c
    b = b - (a * b).sum(-1, keepdim=True) * a
    b = b / b.norm(dim=-1, keepdim=True)
    return c + C_O * (math.cos(ANGLE_CA_C_O) * a - math.sin(ANGLE_CA_C_O) * b)


def atoms_from_frames(rots: torch.Tensor, trans: torch.Tensor,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """Ideal backbone atoms N, CA, C, O ``[..., L, 4, 3]`` of chains of frames.

    Args:
        rots: ``[..., L, 3, 3]``; trans: ``[..., L, 3]`` (Angstrom); residues are consecutive
            along ``L``.
        mask: optional ``[..., L]`` bool of real residues (padding at the end); the last real
            residue of each chain gets the terminal O.

    Returns:
        ``[..., L, 4, 3]`` atom positions (same units as ``trans``).
    """
    local = ideal_local_positions(trans.dtype, trans.device)
    nca_c = torch.einsum("...ij,aj->...ai", rots, local) + trans.unsqueeze(-2)  # [..., L, 3, 3]
    n, ca, c = nca_c.unbind(-2)
    n_virtual = place_atom(n, ca, c, C_N, ANGLE_CA_C_N, TERMINAL_PSI)
    n_next = torch.cat([n[..., 1:, :], n_virtual[..., -1:, :]], dim=-2)
    if mask is not None:
        last = mask & ~torch.cat([mask[..., 1:], torch.zeros_like(mask[..., :1])], dim=-1)
        n_next = torch.where(last.unsqueeze(-1), n_virtual, n_next)
    o = place_oxygen(ca, c, n_next)
    return torch.stack([n, ca, c, o], dim=-2)


def centre(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Subtract the (masked) mean over the residue axis: ``x [..., L, 3]``, mask ``[..., L]``."""
    if mask is None:
        return x - x.mean(dim=-2, keepdim=True)
    w = mask.to(x.dtype).unsqueeze(-1)
    mean = (x * w).sum(-2, keepdim=True) / w.sum(-2, keepdim=True).clamp_min(1)
    return (x - mean) * w


def kabsch_rotation(p: torch.Tensor, q: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The proper rotation ``Q [..., 3, 3]`` minimising ``sum |Q p_i - q_i|^2`` for centred points.

    Args:
        p, q: ``[..., L, 3]`` centred point sets; mask: optional ``[..., L]`` weights/bools.
    """
    if mask is not None:
        p = p * mask.to(p.dtype).unsqueeze(-1)
    h = q.transpose(-1, -2) @ p  # [..., 3, 3] = sum q_i p_i^T
    u, _, vh = torch.linalg.svd(h)
    d = torch.det(u @ vh)
    fix = torch.ones(h.shape[:-1], dtype=h.dtype, device=h.device)
    fix[..., 2] = d
    return u @ (fix.unsqueeze(-1) * vh)
