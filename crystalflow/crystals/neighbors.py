"""Batched periodic radius graphs with lattice image offsets, in pure torch.

No pyg-lib / torch-cluster: every crystal of a batch is handled in one vectorised pass. For each
crystal ``b`` and cutoff ``r_b`` we enumerate, per ordered atom pair ``(i, j)``, the lattice images
``n`` (integer vectors) such that the Cartesian vector

    ``v = (f_j + n - f_i) @ L_b``        (rows of ``L_b`` are the lattice vectors)

can be shorter than ``r_b``, and keep those with ``0 < |v| < r_b``. The enumeration is complete:
with ``w = (f_j - f_i)`` wrapped into ``[-1/2, 1/2)`` and ``c_k`` the columns of ``L_b^{-1}`` (so the
fractional component of a Cartesian vector ``v`` is ``v . c_k``), ``|w_k + n_k| <= r_b |c_k|``, hence
``|n_k| <= floor(r_b |c_k| + 1/2)``. Only the image range of each crystal is enumerated (no batch-wide
padding), so a flat cell next to a cubic one costs nothing extra. Cost: the minimum-image Cartesian
vector of each of the ``sum_b n_b^2`` pairs is computed once and each image adds its crystal's
Cartesian offset, so a candidate costs one gather and one addition; only kept edges are then
recomputed with autograd.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from crystalflow.crystals.graph import fully_connected_edges

#: refuse to enumerate more images than this per direction (a degenerate cell would ask for ~inf)
MAX_IMAGES = 64


@dataclass(frozen=True)
class PeriodicGraph:
    """Edges ``src -> dst`` of a periodic radius graph over a batch of crystals.

    Attributes:
        src: ``[E]`` global index of the neighbour atom ``j``.
        dst: ``[E]`` global index of the centre atom ``i`` (messages flow ``src -> dst``).
        offsets: ``[E, 3]`` integer lattice image of ``j`` (as the dtype of the coordinates).
        vectors: ``[E, 3]`` Cartesian vectors ``(f_j + n - f_i) @ L`` from ``i`` to the image of ``j``.
        lengths: ``[E]`` their norms.
        edge_batch: ``[E]`` crystal of each edge.
    """

    src: torch.Tensor
    dst: torch.Tensor
    offsets: torch.Tensor
    vectors: torch.Tensor
    lengths: torch.Tensor
    edge_batch: torch.Tensor


def image_ranges(lattice: torch.Tensor, cutoff: torch.Tensor) -> torch.Tensor:
    """Largest lattice image index needed per direction so that no neighbour is missed.

    Args:
        lattice: ``[B, 3, 3]`` row-vector lattice matrices.
        cutoff: ``[B]`` radii in Angstrom.

    Returns:
        ``[B, 3]`` integers ``m_k = floor(r |c_k| + 1/2)`` (``c_k`` the columns of ``L^{-1}``),
        valid for fractional differences wrapped into ``[-1/2, 1/2)``.
    """
    inv_norms = torch.linalg.inv(lattice.detach()).norm(dim=-2)  # [B, 3] norms of the columns
    m = torch.floor(cutoff.detach()[:, None] * inv_norms + 0.5)
    if not torch.isfinite(m).all() or m.max() > MAX_IMAGES:
        raise ValueError(f"periodic_radius_graph: a cell needs more than {MAX_IMAGES} images per "
                         "direction (near-degenerate lattice or a cutoff far above the cell size)")
    return m.long()


def periodic_radius_graph(
    frac: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor, num_atoms: torch.Tensor,
    cutoff: torch.Tensor,
) -> PeriodicGraph:
    """All pairs (including an atom and its own images) closer than each crystal's cutoff.

    Args:
        frac: ``[N, 3]`` fractional coordinates (any real values; they are wrapped).
        lattice: ``[B, 3, 3]`` row-vector lattice matrices.
        batch: ``[N]`` crystal of each atom (atoms of a crystal contiguous, crystals in order).
        num_atoms: ``[B]`` atoms per crystal.
        cutoff: ``[B]`` (or scalar) radius per crystal, Angstrom. Edges with ``|v| < cutoff`` and
            ``|v| > 0`` are returned; the zero vector (an atom with itself, no image) never is.

    Returns:
        A :class:`PeriodicGraph`; vectors and lengths are differentiable in ``frac`` and ``lattice``.
    """
    device, dtype = frac.device, frac.dtype
    b = num_atoms.shape[0]
    cutoff = torch.as_tensor(cutoff, dtype=dtype, device=device).expand(b)
    m = image_ranges(lattice, cutoff)  # [B, 3]
    # every ordered atom pair of each crystal, its minimum-image fractional difference (wrapped
    # into [-1/2, 1/2)) and that difference in Cartesian coordinates (cheap: sum_b n_b^2 pairs)
    pair_src, pair_dst, pair_crystal = fully_connected_edges(num_atoms)  # contiguous per crystal
    pairs_per = num_atoms * num_atoms
    first_pair = torch.cumsum(pairs_per, 0) - pairs_per
    diff = frac[pair_src] - frac[pair_dst]
    shift = -torch.floor(diff.detach() + 0.5)  # integer image applied by the wrapping
    pair_vec = torch.einsum("pk,pkl->pl", diff + shift, lattice[pair_crystal])  # [sum n^2, 3]
    # every integer offset of the largest box, then the (crystal, offset) entries inside each box
    mmax = m.max(0).values.tolist() if b else [0, 0, 0]
    axes = [torch.arange(-k, k + 1, device=device) for k in mmax]
    grid = torch.cartesian_prod(*axes).reshape(-1, 3)  # [G, 3]
    inside = (grid.abs()[None] <= m[:, None]).all(-1)  # [B, G]
    entry_crystal, entry_offset = inside.nonzero(as_tuple=True)  # [P]
    entry_images = grid[entry_offset].to(dtype)  # [P, 3]
    entry_vec = torch.einsum("pk,pkl->pl", entry_images, lattice[entry_crystal])  # [P, 3]
    # candidates: every pair of the entry's crystal shifted by the entry's image
    per_entry = pairs_per[entry_crystal]
    entry = torch.repeat_interleave(torch.arange(entry_crystal.shape[0], device=device), per_entry)
    first_cand = torch.cumsum(per_entry, 0) - per_entry
    pair = (torch.arange(int(per_entry.sum()), device=device) - first_cand[entry]
            + first_pair[entry_crystal[entry]])
    with torch.no_grad():  # select first, so no norm is ever differentiated at zero
        d0 = (pair_vec[pair] + entry_vec[entry]).norm(dim=-1)
        r = cutoff[entry_crystal[entry]]
        keep_idx = ((d0 < r) & (d0 > 1e-8 * r.clamp_min(1.0))).nonzero(as_tuple=True)[0]
    pair, entry = pair[keep_idx], entry[keep_idx]
    vec = pair_vec[pair] + entry_vec[entry]
    return PeriodicGraph(
        src=pair_src[pair], dst=pair_dst[pair], offsets=shift[pair] + entry_images[entry],
        vectors=vec, lengths=vec.norm(dim=-1), edge_batch=pair_crystal[pair],
    )
