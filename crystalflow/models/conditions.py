"""What a vector-field network is told besides the noisy state: the conditioning contract.

Every network is called as ``model(x_t, t, conditions)``; the flows build the conditions
(:func:`crystalflow.crystal_tasks.csp.conditions_of`, :func:`crystalflow.crystal_tasks.sgcsp.sg_conditions`) and the networks
read them. :class:`Conditions` serves every crystal network; :class:`SGConditions` adds the
batch's symmetry layout for the space-group conditioned ones (SGNet, DNGNet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # typing only: the networks need no symmetry import to be built
    from crystalflow.symmetry.batch import SymmetryBatch

__all__ = ["Conditions", "SGConditions"]


@dataclass(frozen=True)
class Conditions:
    """What the network is told besides the noisy state.

    Attributes:
        atom_types: ``[N]`` atomic numbers; batch: ``[N]`` crystal of each atom;
        num_atoms: ``[B]`` atoms per crystal.
        node_features: optional ``[N, cond_dim]`` extra per-atom conditioning (space-group
            conditioned flows put their symmetry embeddings here).
    """

    atom_types: torch.Tensor
    batch: torch.Tensor
    num_atoms: torch.Tensor
    node_features: torch.Tensor | None = None


@dataclass(frozen=True)
class SGConditions(Conditions):
    """:class:`Conditions` plus the batch's :class:`~crystalflow.symmetry.SymmetryBatch`
    (space group, Wyckoff ids, orbits and operations of every atom)."""

    symmetry: SymmetryBatch | None = None
