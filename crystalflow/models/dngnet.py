"""SGNet with a type-logit head: the network of de-novo generation (:mod:`crystalflow.dng`).

Same trunk and parameter names as :class:`~crystalflow.models.sgnet.SGNet` (a space-group
conditioned CSP checkpoint can initialise it, see ``--init-from``), plus ``type_head``: per-atom
logits over ``0..MAX_ATOMIC_NUM``. Index 0 of the trunk's type embedding, unused by atomic numbers,
is the *mask* token of the masked discrete source. The flow averages the logits over each Wyckoff
orbit (:func:`~crystalflow.symmetry.group_average_scalars`), so one type per orbit is predicted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch_geometric.utils import scatter

from crystalflow.crystals.crystal import MAX_ATOMIC_NUM
from crystalflow.crystals.graph import fully_connected_edges
from crystalflow.models.cspnet import fourier_frac, sinusoidal_time
from crystalflow.models.sgnet import SGConditions, SGNet, SGNetConfig

__all__ = ["DNGNet", "DNGNetConfig", "MASK_TOKEN"]

#: type index of a masked (not yet generated) atom
MASK_TOKEN = 0


@dataclass(frozen=True)
class DNGNetConfig:
    """SGNet sizes; the type head predicts ``MAX_ATOMIC_NUM + 1`` logits (index 0 = mask)."""

    hidden: int = 128
    layers: int = 4
    frequencies: int = 10
    time_dim: int = 64
    lattice_dim: int = 6
    sg_dim: int = 32
    wyckoff_dim: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


class DNGNet(SGNet):
    """``(x_t, t, SGConditions) -> {frac [N, 3], lattice [B, 6], types [N, 101]}`` (raw).

    ``cond.atom_types`` holds the current (possibly masked, 0) type of every atom.
    """

    def __init__(self, config: DNGNetConfig = DNGNetConfig()) -> None:
        super().__init__(SGNetConfig(**config.to_dict()))
        self.config = config
        self.type_head = nn.Linear(config.hidden, MAX_ATOMIC_NUM + 1)

    def forward(self, x_t: dict[str, torch.Tensor], t: torch.Tensor, cond: SGConditions) -> dict[str, torch.Tensor]:
        sym = cond.symmetry
        if sym is None:
            raise ValueError("DNGNet needs SGConditions with a symmetry batch")
        net = self.net
        frac, lat = x_t["frac"], x_t["lattice"]
        src, dst, edge_batch = fully_connected_edges(cond.num_atoms)
        edge_feat = torch.cat(
            [lat[edge_batch], fourier_frac(frac[src] - frac[dst], net.config.frequencies)], dim=-1
        )
        temb = sinusoidal_time(t, net.config.time_dim)[cond.batch]
        h = net.input(torch.cat([net.type_embedding(cond.atom_types), temb, self.node_features(sym)], dim=-1))
        for layer in net.layers:
            h = layer(h, src, dst, edge_feat)
        h = net.out_norm(h)
        pooled = scatter(h, cond.batch, dim=0, dim_size=cond.num_atoms.shape[0], reduce="mean")
        return {"frac": net.frac_head(h), "lattice": net.lattice_head(pooled), "types": self.type_head(h)}
