"""SGNet with a type-logit head: the network of de-novo generation (:mod:`crystalflow.crystal_tasks.dng`).

Same trunk and parameter names as :class:`~crystalflow.models.sgnet.SGNet` (a space-group
conditioned CSP checkpoint can initialise it, see ``--init-from``), plus ``type_head``: per-atom
logits over ``0..MAX_ATOMIC_NUM``. Index 0 of the trunk's type embedding, unused by atomic numbers,
is the *mask* token of the masked discrete source. The flow averages the logits over each Wyckoff
orbit (:func:`~crystalflow.symmetry.group_average_scalars`), so one type per orbit is predicted.
"""

from __future__ import annotations

import torch
from torch import nn

from crystalflow.crystals.crystal import MAX_ATOMIC_NUM
from crystalflow.models.conditions import SGConditions
from crystalflow.models.sgnet import SGNet, SGNetConfig

__all__ = ["DNGNet", "DNGNetConfig", "MASK_TOKEN"]

#: type index of a masked (not yet generated) atom
MASK_TOKEN = 0

#: DNGNet has SGNet's sizes; its type head (``MAX_ATOMIC_NUM + 1`` logits, index 0 = mask) adds none
DNGNetConfig = SGNetConfig


class DNGNet(SGNet):
    """``(x_t, t, SGConditions) -> {frac [N, 3], lattice [B, 6], types [N, 101]}`` (raw).

    ``cond.atom_types`` holds the current (possibly masked, 0) type of every atom.
    """

    def __init__(self, config: DNGNetConfig = DNGNetConfig()) -> None:
        super().__init__(config)
        self.type_head = nn.Linear(config.hidden, MAX_ATOMIC_NUM + 1)

    def forward(self, x_t: dict[str, torch.Tensor], t: torch.Tensor, cond: SGConditions) -> dict[str, torch.Tensor]:
        h, pooled = self.net.encode(x_t, t, self.inner_conditions(cond))
        return {"frac": self.net.frac_head(h), "lattice": self.net.lattice_head(pooled),
                "types": self.type_head(h)}
