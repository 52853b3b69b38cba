"""Per-crystal symmetry records and their PyG-style concatenation into a batch.

Atom order of a crystal built from a :class:`WyckoffTemplate`: orbits in template order, and inside
orbit ``o`` (Wyckoff position ``w``) atom ``j`` is ``g_{w.coset_ops[j]}`` applied to the orbit's
representative; atom 0 of each orbit is the representative itself.

Permutation convention: ``perm[g, i] = j`` when operation ``g`` maps atom ``i`` onto atom ``j``
(``R_g x_i + t_g == x_j`` modulo 1). The batch flattens these into per-(crystal, operation, atom)
*entries* ``(entry_dst = i, entry_src = j, entry_op = g)`` with global indices, and also holds the
group-averaging operator reduced to *pairs* ``(pair_dst = i, pair_src = j, pair_matrix =
1/G sum_{g: perm[g, i] = j} R_g^{-1})``: the same linear map with fewer terms (operations of an
atom's site-symmetry group that send it to the same atom are summed once, ahead of time).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from crystalflow.symmetry.groups import get_space_group
from crystalflow.symmetry.template import WyckoffTemplate

__all__ = [
    "CrystalSymmetry",
    "SymmetryBatch",
    "crystal_symmetry",
    "collate_symmetry",
    "global_wyckoff_id",
    "NUM_WYCKOFF_IDS",
]

#: Total number of Wyckoff positions over the 230 groups (size of a global Wyckoff embedding).
NUM_WYCKOFF_IDS = 1731


#: Number of Wyckoff positions of groups 1-230 (spglib's tables; tests check it against
#: :func:`wyckoff_positions`). A constant, so that numbering a template's positions does not parse
#: the Wyckoff tables of all 230 groups (~2 s) first.
WYCKOFF_COUNTS: tuple[int, ...] = (
    1, 9, 5, 1, 3, 3, 1, 2, 1, 15, 6, 10, 7, 5, 6, 21, 5, 3, 1, 3, 12, 11, 11, 4, 9, 3, 5, 4,
    1, 3, 2, 3, 1, 3, 6, 2, 4, 6, 4, 3, 2, 5, 2, 5, 3, 3, 27, 13, 18, 13, 12, 5, 9, 6, 9, 5, 5,
    8, 7, 4, 3, 4, 8, 7, 18, 13, 15, 9, 16, 8, 15, 11, 6, 10, 4, 1, 4, 1, 3, 2, 8, 7, 12, 11, 7,
    7, 9, 6, 16, 7, 4, 2, 16, 7, 4, 2, 11, 7, 7, 4, 5, 4, 4, 3, 6, 3, 5, 4, 3, 2, 15, 14, 6, 5,
    12, 10, 9, 9, 10, 9, 10, 5, 21, 14, 14, 11, 12, 9, 11, 7, 18, 16, 11, 14, 9, 11, 8, 10, 15,
    13, 9, 7, 4, 1, 1, 2, 7, 6, 12, 7, 3, 3, 3, 3, 6, 5, 4, 4, 3, 3, 2, 12, 9, 10, 7, 9, 6, 4,
    1, 1, 3, 3, 3, 12, 12, 9, 14, 3, 3, 11, 11, 9, 6, 4, 4, 4, 15, 12, 12, 9, 18, 13, 12, 12,
    10, 8, 6, 2, 3, 12, 8, 9, 7, 8, 4, 5, 11, 13, 10, 8, 10, 5, 5, 9, 10, 9, 8, 9, 8, 5, 14, 9,
    12, 12, 12, 10, 9, 8, 12, 8,
)


@functools.lru_cache(maxsize=None)
def _wyckoff_id_offsets() -> tuple[int, ...]:
    """Offset of each group's first Wyckoff position in the global numbering (index = group)."""
    offsets = [0, 0]
    for count in WYCKOFF_COUNTS[:-1]:
        offsets.append(offsets[-1] + count)
    return tuple(offsets)


def global_wyckoff_id(space_group: int, wyckoff_index: int) -> int:
    """Global id (0-1730) of Wyckoff position ``wyckoff_index`` (0 = ``a``) of a space group."""
    return _wyckoff_id_offsets()[space_group] + wyckoff_index


@dataclass(frozen=True, eq=False)
class CrystalSymmetry:
    """Symmetry layout of one crystal (CPU tensors; positions live in the crystal itself).

    Attributes:
        template: the Wyckoff template the layout was built from.
        num_ops: ``G``, operations of the conventional cell.
        wyckoff_index: ``[n]`` long, Wyckoff position of each atom (0 = letter ``a``).
        orbit: ``[n]`` long, orbit of each atom (0..M-1).
        coset_op: ``[n]`` long, operation mapping the orbit representative onto the atom.
        perm: ``[G, n]`` long, ``perm[g, i]`` = atom onto which ``g`` maps atom ``i``.
        orbit_basis: ``[M, 3, 3]`` float64, ``W`` of each orbit padded with zero columns.
        orbit_offset: ``[M, 3]`` float64, ``b`` of each orbit.
        orbit_dof: ``[M]`` long, number of free parameters of each orbit.
        atom_rot: ``[n, 3, 3]`` float64, rotation of ``coset_op``.
        atom_trans: ``[n, 3]`` float64, translation of ``coset_op``.
        pair_dst: ``[P]`` long, atom ``i`` of each averaging pair.
        pair_src: ``[P]`` long, atom ``j`` of each averaging pair (same orbit as ``i``).
        pair_matrix: ``[P, 3, 3]`` float64, ``1/G sum_{g: sigma_g(i) = j} R_g^{-1}``.
    """

    template: WyckoffTemplate
    num_ops: int
    wyckoff_index: torch.Tensor
    orbit: torch.Tensor
    coset_op: torch.Tensor
    perm: torch.Tensor
    orbit_basis: torch.Tensor
    orbit_offset: torch.Tensor
    orbit_dof: torch.Tensor
    atom_rot: torch.Tensor
    atom_trans: torch.Tensor
    pair_dst: torch.Tensor
    pair_src: torch.Tensor
    pair_matrix: torch.Tensor

    @property
    def space_group(self) -> int:
        return self.template.space_group

    @property
    def num_atoms(self) -> int:
        return int(self.orbit.shape[0])

    @property
    def num_orbits(self) -> int:
        return len(self.template.letters)

    @property
    def atom_types(self) -> torch.Tensor:
        """``[n]`` long atomic numbers."""
        per_orbit = torch.tensor(self.template.atom_types, dtype=torch.long)
        return per_orbit[self.orbit]


@functools.lru_cache(maxsize=4096)
def crystal_symmetry(template: WyckoffTemplate) -> CrystalSymmetry:
    """Symmetry layout of the crystals of a template (cached: templates are hashable).

    Args:
        template: a validated Wyckoff template.

    Returns:
        The :class:`CrystalSymmetry`; the same object for equal templates.
    """
    group = get_space_group(template.space_group)
    positions = template.positions
    mults = [wp.multiplicity for wp in positions]
    starts = np.concatenate([[0], np.cumsum(mults)[:-1]]).astype(np.int64)
    perm = np.concatenate([wp.orbit_perm + s for wp, s in zip(positions, starts)], axis=1)
    basis = np.zeros((len(positions), 3, 3))
    for o, wp in enumerate(positions):
        basis[o, :, : wp.dof] = wp.basis
    coset = np.concatenate([wp.coset_ops for wp in positions])
    pairs = [wp.averaging_pairs for wp in positions]
    return CrystalSymmetry(
        template=template,
        num_ops=group.num_ops,
        wyckoff_index=torch.tensor(np.repeat([wp.index for wp in positions], mults)),
        orbit=torch.tensor(np.repeat(np.arange(len(positions)), mults)),
        coset_op=torch.tensor(coset),
        perm=torch.tensor(perm),
        orbit_basis=torch.tensor(basis),
        orbit_offset=torch.tensor(np.stack([wp.offset for wp in positions])),
        orbit_dof=torch.tensor([wp.dof for wp in positions], dtype=torch.long),
        atom_rot=torch.tensor(group.rotations[coset], dtype=torch.float64),
        atom_trans=torch.tensor(group.translations[coset]),
        pair_dst=torch.tensor(np.concatenate([p[0] + s for p, s in zip(pairs, starts)])),
        pair_src=torch.tensor(np.concatenate([p[1] + s for p, s in zip(pairs, starts)])),
        pair_matrix=torch.tensor(np.concatenate([p[2] for p in pairs])),
    )


@dataclass(frozen=True)
class SymmetryBatch:
    """Symmetry fields of a batch of ``B`` crystals, ``N`` atoms, ``M`` orbits, ``O`` operations
    (summed over crystals), ``E = sum_b G_b n_b`` permutation entries and ``P`` averaging pairs.

    Index fields are global (offset like PyG when crystals are concatenated).

    Attributes:
        space_group: ``[B]`` long.
        num_atoms: ``[B]`` long, atoms per crystal (must equal the CrystalBatch's).
        num_ops: ``[B]`` long, ``G_b``.
        num_orbits: ``[B]`` long.
        wyckoff_index: ``[N]`` long, Wyckoff position within the group (0 = ``a``).
        wyckoff_id: ``[N]`` long, global Wyckoff id (0..1730) for embeddings.
        orbit: ``[N]`` long, global orbit id of each atom.
        atom_rot: ``[N, 3, 3]`` float64, rotation of the operation mapping the atom's orbit
            representative onto the atom.
        atom_trans: ``[N, 3]`` float64, its translation.
        atom_inv_num_ops: ``[N]`` float64, ``1 / G`` of the atom's crystal.
        orbit_batch: ``[M]`` long, crystal of each orbit.
        orbit_size: ``[M]`` long, multiplicity.
        orbit_basis: ``[M, 3, 3]`` float64, Wyckoff ``W`` (zero-padded columns).
        orbit_offset: ``[M, 3]`` float64, Wyckoff ``b``.
        orbit_dof: ``[M]`` long.
        op_rot: ``[O, 3, 3]`` float64, rotations of every crystal's operations, concatenated.
        op_rot_inv: ``[O, 3, 3]`` float64, their inverses.
        op_trans: ``[O, 3]`` float64, translations.
        entry_dst: ``[E]`` long, atom ``i`` (global).
        entry_src: ``[E]`` long, atom ``perm[g, i]`` (global).
        entry_op: ``[E]`` long, operation ``g`` (global row of ``op_*``).
        pair_dst: ``[P]`` long, atom ``i`` of each averaging pair (global).
        pair_src: ``[P]`` long, atom ``j`` (global).
        pair_matrix: ``[P, 3, 3]`` float64, ``1/G sum_{g: sigma_g(i) = j} R_g^{-1}``.
    """

    space_group: torch.Tensor
    num_atoms: torch.Tensor
    num_ops: torch.Tensor
    num_orbits: torch.Tensor
    wyckoff_index: torch.Tensor
    wyckoff_id: torch.Tensor
    orbit: torch.Tensor
    atom_rot: torch.Tensor
    atom_trans: torch.Tensor
    atom_inv_num_ops: torch.Tensor
    orbit_batch: torch.Tensor
    orbit_size: torch.Tensor
    orbit_basis: torch.Tensor
    orbit_offset: torch.Tensor
    orbit_dof: torch.Tensor
    op_rot: torch.Tensor
    op_rot_inv: torch.Tensor
    op_trans: torch.Tensor
    entry_dst: torch.Tensor
    entry_src: torch.Tensor
    entry_op: torch.Tensor
    pair_dst: torch.Tensor
    pair_src: torch.Tensor
    pair_matrix: torch.Tensor

    def to(self, device: torch.device | str) -> SymmetryBatch:
        """A copy with every tensor on ``device``."""
        return SymmetryBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @property
    def batch(self) -> torch.Tensor:
        """``[N]`` long crystal index of each atom."""
        return self.orbit_batch[self.orbit]


@functools.lru_cache(maxsize=None)
def _group_tensors(number: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CPU float64 ``(rotations, inverse rotations, translations)`` of a group (cached)."""
    group = get_space_group(number)
    return (
        torch.tensor(group.rotations, dtype=torch.float64),
        torch.tensor(group.rotations_inv, dtype=torch.float64),
        torch.tensor(group.translations),
    )


def _offsets(sizes: list[int], counts: list[int]) -> torch.Tensor:
    """``[sum counts]`` exclusive prefix sums of ``sizes``, each repeated ``counts`` times."""
    size = torch.tensor(sizes, dtype=torch.long)
    return torch.repeat_interleave(
        torch.cumsum(size, 0) - size, torch.tensor(counts, dtype=torch.long)
    )


def collate_symmetry(items: Sequence[CrystalSymmetry]) -> SymmetryBatch:
    """Concatenate per-crystal layouts, offsetting atom, orbit and operation indices.

    Args:
        items: one :class:`CrystalSymmetry` per crystal, in batch order (atoms of crystal ``b``
            must be atoms ``sum(n_<b) ..`` of the CrystalBatch, in the layout's order).

    Returns:
        The :class:`SymmetryBatch` on CPU.
    """
    if not items:
        raise ValueError("cannot collate an empty list of crystals")
    n = [item.num_atoms for item in items]
    g = [item.num_ops for item in items]
    m = [item.num_orbits for item in items]
    entries = [a * b for a, b in zip(n, g)]
    num_pairs = [int(item.pair_dst.shape[0]) for item in items]
    tables = [_group_tensors(item.space_group) for item in items]
    space_group = torch.tensor([item.space_group for item in items])
    num_ops = torch.tensor(g)
    orbit_counts = torch.tensor(m)
    # Per-entry local indices: entry (g, i) of crystal b is row g * n_b + i of perm.
    local = torch.arange(sum(entries)) - _offsets(entries, entries)
    n_rep = torch.repeat_interleave(torch.tensor(n), torch.tensor(entries))
    atom_off_e = _offsets(n, entries)
    wyckoff_index = torch.cat([item.wyckoff_index for item in items])
    gid_off = torch.tensor([_wyckoff_id_offsets()[item.space_group] for item in items])
    return SymmetryBatch(
        space_group=space_group,
        num_atoms=torch.tensor(n),
        num_ops=num_ops,
        num_orbits=orbit_counts,
        wyckoff_index=wyckoff_index,
        wyckoff_id=wyckoff_index + torch.repeat_interleave(gid_off, torch.tensor(n)),
        orbit=torch.cat([item.orbit for item in items]) + _offsets(m, n),
        atom_rot=torch.cat([item.atom_rot for item in items]),
        atom_trans=torch.cat([item.atom_trans for item in items]),
        atom_inv_num_ops=torch.repeat_interleave(1.0 / num_ops.double(), torch.tensor(n)),
        orbit_batch=torch.arange(len(items)).repeat_interleave(orbit_counts),
        orbit_size=torch.cat(
            [torch.bincount(item.orbit, minlength=item.num_orbits) for item in items]
        ),
        orbit_basis=torch.cat([item.orbit_basis for item in items]),
        orbit_offset=torch.cat([item.orbit_offset for item in items]),
        orbit_dof=torch.cat([item.orbit_dof for item in items]),
        op_rot=torch.cat([t[0] for t in tables]),
        op_rot_inv=torch.cat([t[1] for t in tables]),
        op_trans=torch.cat([t[2] for t in tables]),
        entry_dst=local % n_rep + atom_off_e,
        entry_src=torch.cat([item.perm.reshape(-1) for item in items]) + atom_off_e,
        entry_op=torch.div(local, n_rep, rounding_mode="floor") + _offsets(g, entries),
        pair_dst=torch.cat([item.pair_dst for item in items]) + _offsets(n, num_pairs),
        pair_src=torch.cat([item.pair_src for item in items]) + _offsets(n, num_pairs),
        pair_matrix=torch.cat([item.pair_matrix for item in items]),
    )
