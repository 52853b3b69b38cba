"""Graphs over batched crystals (built here, batched; no torch-cluster / pyg-lib needed)."""

from __future__ import annotations

import torch


def fully_connected_edges(num_atoms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All ordered atom pairs (i, j) inside each crystal, self pairs included, fully vectorised.

    Args:
        num_atoms: ``[B]`` atoms per crystal.

    Returns:
        ``(src [E], dst [E], edge_batch [E])`` global atom indices with ``E = sum_b n_b^2``;
        messages flow ``src -> dst``, edges of one crystal are contiguous.
    """
    device = num_atoms.device
    b = num_atoms.shape[0]
    first_atom = torch.cumsum(num_atoms, 0) - num_atoms
    edges_per = num_atoms * num_atoms
    edge_batch = torch.repeat_interleave(torch.arange(b, device=device), edges_per)
    first_edge = torch.cumsum(edges_per, 0) - edges_per
    local = torch.arange(int(edges_per.sum()), device=device) - first_edge[edge_batch]
    n = num_atoms[edge_batch]
    dst = local // n + first_atom[edge_batch]
    src = local % n + first_atom[edge_batch]
    return src, dst, edge_batch
