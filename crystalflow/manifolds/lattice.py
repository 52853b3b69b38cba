"""An unconstrained chart of lattice parameters (FlowMM-style), with statistics fitted to data.

Lengths go through ``log``; angles, which a Niggli-reduced cell keeps within [60, 120] degrees, go
through a scaled logit of their position inside ``(ANGLE_LO, ANGLE_HI)``. Both are then
standardised with a mean and standard deviation fitted on the training set, so the lattice field
lives in ``Euclidean(6)`` with a standard normal prior (log-normal lengths, logit-normal angles).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: the open interval the angle chart maps onto R (a little wider than Niggli's [60, 120])
ANGLE_LO, ANGLE_HI = 59.0, 121.0
_EPS = 1e-6


def params_to_unconstrained(params: torch.Tensor) -> torch.Tensor:
    """``[..., 6]`` (a, b, c, alpha, beta, gamma) -> ``[..., 6]`` (log lengths, logit angles)."""
    lengths = params[..., :3].clamp_min(_EPS).log()
    s = ((params[..., 3:] - ANGLE_LO) / (ANGLE_HI - ANGLE_LO)).clamp(_EPS, 1 - _EPS)
    return torch.cat([lengths, torch.logit(s)], dim=-1)


def unconstrained_to_params(u: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`params_to_unconstrained`."""
    lengths = u[..., :3].exp()
    angles = ANGLE_LO + (ANGLE_HI - ANGLE_LO) * torch.sigmoid(u[..., 3:])
    return torch.cat([lengths, angles], dim=-1)


@dataclass(frozen=True)
class LatticeChart:
    """Standardised unconstrained lattice coordinates ``z = (u - mean) / std``.

    Attributes:
        mean: ``[6]`` mean of the unconstrained parameters over the training set.
        std: ``[6]`` their standard deviation (floored to avoid division by ~0).
    """

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, params: torch.Tensor, min_std: float = 1e-2) -> "LatticeChart":
        """Fit to training lattices ``[B, 6]``."""
        u = params_to_unconstrained(params.double())
        return cls(mean=u.mean(0), std=u.std(0).clamp_min(min_std))

    def to_z(self, params: torch.Tensor) -> torch.Tensor:
        """``[..., 6]`` parameters -> standardised chart coordinates."""
        mean, std = self.mean.to(params), self.std.to(params)
        return (params_to_unconstrained(params) - mean) / std

    def to_params(self, z: torch.Tensor) -> torch.Tensor:
        """``[..., 6]`` chart coordinates -> lattice parameters."""
        mean, std = self.mean.to(z), self.std.to(z)
        return unconstrained_to_params(z * std + mean)

    def state_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict) -> "LatticeChart":
        return cls(mean=torch.tensor(state["mean"], dtype=torch.float64),
                   std=torch.tensor(state["std"], dtype=torch.float64))
