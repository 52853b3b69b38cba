"""Space-group conditioning wrapper around :class:`CSPNet`.

Every atom gets an embedding of its crystal's space group and of its global Wyckoff id
(``SymmetryBatch.wyckoff_id``, 0-1730, which also identifies the group), concatenated and fed to
CSPNet's input layer through ``Conditions.node_features`` (``CSPNetConfig.cond_dim``). The wrapper
returns CSPNet's raw velocities; the space-group conditioned flow (:mod:`crystalflow.crystal_tasks.sgcsp`)
group-averages the fractional field and projects the lattice field onto the crystal family.
With ``self_condition`` CSPNet also reads the previous clean-crystal estimate (``x_t["sc_frac"]``,
``x_t["sc_lattice"]``), which the flow supplies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from crystalflow.models.conditions import Conditions, SGConditions
from crystalflow.models.cspnet import CSPNet, CSPNetConfig


@dataclass(frozen=True)
class SGNetConfig:
    """CSPNet sizes plus the widths of the space-group and Wyckoff embeddings."""

    hidden: int = 128
    layers: int = 4
    frequencies: int = 10
    time_dim: int = 64
    lattice_dim: int = 6
    sg_dim: int = 32
    wyckoff_dim: int = 64
    #: read the previous clean-crystal estimate (CSPNet's ``self_condition``)
    self_condition: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


class SGNet(nn.Module):
    """``(x_t, t, SGConditions) -> {frac [N, 3], lattice [B, 6]}`` (not yet symmetrised)."""

    def __init__(self, config: SGNetConfig = SGNetConfig()) -> None:
        super().__init__()
        from crystalflow.symmetry import NUM_WYCKOFF_IDS

        self.config = config
        self.sg_embedding = nn.Embedding(231, config.sg_dim)
        self.wyckoff_embedding = nn.Embedding(NUM_WYCKOFF_IDS, config.wyckoff_dim)
        self.net = CSPNet(CSPNetConfig(
            hidden=config.hidden, layers=config.layers, frequencies=config.frequencies,
            time_dim=config.time_dim, lattice_dim=config.lattice_dim,
            cond_dim=config.sg_dim + config.wyckoff_dim, self_condition=config.self_condition,
        ))

    def node_features(self, sym) -> torch.Tensor:
        """``[N, sg_dim + wyckoff_dim]`` per-atom symmetry embeddings."""
        sg = sym.space_group.index_select(0, sym.batch)
        return torch.cat([self.sg_embedding(sg), self.wyckoff_embedding(sym.wyckoff_id)], dim=-1)

    def inner_conditions(self, cond: SGConditions) -> Conditions:
        """CSPNet's conditions: the atoms plus their space-group and Wyckoff embeddings."""
        if cond.symmetry is None:
            raise ValueError(f"{type(self).__name__} needs SGConditions with a symmetry batch")
        return Conditions(atom_types=cond.atom_types, batch=cond.batch, num_atoms=cond.num_atoms,
                          node_features=self.node_features(cond.symmetry))

    def forward(self, x_t: dict[str, torch.Tensor], t: torch.Tensor, cond: SGConditions) -> dict[str, torch.Tensor]:
        return self.net(x_t, t, self.inner_conditions(cond))
