"""An unconstrained chart of lattice parameters (FlowMM-style), with statistics fitted to data.

Lengths go through ``log``; angles go through a scaled logit of their position inside an open
window ``(angle_lo, angle_hi)``. Both are then standardised with a mean and standard deviation
fitted on the training set, so the lattice field lives in ``Euclidean(6)`` with a standard normal
prior (log-normal lengths, logit-normal angles).

Two windows are used. Niggli-reduced cells (P1 CSP) keep their angles within [60, 120] degrees:
:data:`NIGGLI_ANGLE_WINDOW` is a little wider. Conventional cells (space-group conditioned flows)
are not Niggli cells: spglib's standard monoclinic cells have ``beta`` up to 135 degrees in the
MP-20 train split (437 of 15,837 cells have a free angle above 121) and hexagonal cells sit at
``gamma = 120``, on the Niggli window's edge, so they use :data:`OPEN_ANGLE_WINDOW`, ``(0, 180)``.

Statistics are per coordinate, or *pooled*: one mean/std shared by the three lengths and one by
the three angles. Pooling keeps the crystal-family constraints (tied lengths, fixed angles) linear
in the chart: "tied lengths equal" stays "tied chart coordinates equal". A free-angle mask leaves
fixed angles (90 and 120 degrees of the higher families) out of the angle statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: the angle window of Niggli-reduced cells (a little wider than Niggli's [60, 120] degrees)
NIGGLI_ANGLE_WINDOW = (59.0, 121.0)
#: the angle window of conventional cells (any angle)
OPEN_ANGLE_WINDOW = (0.0, 180.0)
#: the P1 window (kept as module constants for older imports)
ANGLE_LO, ANGLE_HI = NIGGLI_ANGLE_WINDOW
_EPS = 1e-6

__all__ = ["LatticeChart", "NIGGLI_ANGLE_WINDOW", "OPEN_ANGLE_WINDOW", "params_to_unconstrained",
           "unconstrained_to_params"]


def params_to_unconstrained(params: torch.Tensor, angle_lo: float = ANGLE_LO,
                            angle_hi: float = ANGLE_HI) -> torch.Tensor:
    """``[..., 6]`` (a, b, c, alpha, beta, gamma) -> ``[..., 6]`` (log lengths, logit angles)."""
    lengths = params[..., :3].clamp_min(_EPS).log()
    return torch.cat([lengths, angles_to_logit(params[..., 3:], angle_lo, angle_hi)], dim=-1)


def angles_to_logit(degrees: torch.Tensor, angle_lo: float = ANGLE_LO,
                    angle_hi: float = ANGLE_HI) -> torch.Tensor:
    """``[...]`` angles in degrees -> logit of their position in the window (clamped inside)."""
    s = ((degrees - angle_lo) / (angle_hi - angle_lo)).clamp(_EPS, 1 - _EPS)
    return torch.logit(s)


def unconstrained_to_params(u: torch.Tensor, angle_lo: float = ANGLE_LO,
                            angle_hi: float = ANGLE_HI) -> torch.Tensor:
    """Inverse of :func:`params_to_unconstrained`."""
    lengths = u[..., :3].exp()
    angles = angle_lo + (angle_hi - angle_lo) * torch.sigmoid(u[..., 3:])
    return torch.cat([lengths, angles], dim=-1)


def _pooled_stats(values: torch.Tensor, min_std: float) -> tuple[float, float]:
    """Mean and floored std of a flat float64 tensor (``(0, min_std)`` with fewer than 2 values)."""
    if values.numel() < 2:
        values = torch.zeros(2, dtype=torch.float64)
    return float(values.mean()), max(float(values.std()), min_std)


@dataclass(frozen=True)
class LatticeChart:
    """Standardised unconstrained lattice coordinates ``z = (u - mean) / std``.

    Attributes:
        mean: ``[6]`` float64 mean of the unconstrained parameters over the training set.
        std: ``[6]`` float64 their standard deviation (floored to avoid division by ~0).
        angle_lo / angle_hi: the open angle window (degrees) of the logit.
    """

    mean: torch.Tensor
    std: torch.Tensor
    angle_lo: float = ANGLE_LO
    angle_hi: float = ANGLE_HI

    @classmethod
    def fit(cls, params: torch.Tensor, min_std: float = 1e-2, *,
            angle_window: tuple[float, float] = NIGGLI_ANGLE_WINDOW, pooled: bool = False,
            free_angles: torch.Tensor | None = None) -> "LatticeChart":
        """Fit to training lattices.

        Args:
            params: ``[B, 6]`` lattice parameters.
            min_std: floor of every standard deviation.
            angle_window: ``(lo, hi)`` degrees of the angle logit.
            pooled: one mean/std for the three lengths and one for the three angles.
            free_angles: ``[B, 3]`` bool, angles that enter the pooled angle statistics (default:
                all); fixed angles are left out.

        Returns:
            The fitted chart.
        """
        lo, hi = angle_window
        u = params_to_unconstrained(params.double(), lo, hi)
        if not pooled:
            return cls(mean=u.mean(0), std=u.std(0).clamp_min(min_std), angle_lo=lo, angle_hi=hi)
        angles = u[:, 3:] if free_angles is None else u[:, 3:][free_angles]
        return cls.pooled(*_pooled_stats(u[:, :3].reshape(-1), min_std),
                          *_pooled_stats(angles.reshape(-1), min_std), angle_window=angle_window)

    @classmethod
    def pooled(cls, length_mean: float, length_std: float, angle_mean: float, angle_std: float, *,
               angle_window: tuple[float, float] = OPEN_ANGLE_WINDOW) -> "LatticeChart":
        """A chart with statistics shared by the lengths and by the angles."""
        mean = torch.tensor([length_mean] * 3 + [angle_mean] * 3, dtype=torch.float64)
        std = torch.tensor([length_std] * 3 + [angle_std] * 3, dtype=torch.float64)
        return cls(mean=mean, std=std, angle_lo=angle_window[0], angle_hi=angle_window[1])

    @property
    def angle_window(self) -> tuple[float, float]:
        return (self.angle_lo, self.angle_hi)

    def to_z(self, params: torch.Tensor) -> torch.Tensor:
        """``[..., 6]`` parameters -> standardised chart coordinates."""
        mean, std = self.mean.to(params), self.std.to(params)
        return (params_to_unconstrained(params, self.angle_lo, self.angle_hi) - mean) / std

    def to_params(self, z: torch.Tensor) -> torch.Tensor:
        """``[..., 6]`` chart coordinates -> lattice parameters."""
        mean, std = self.mean.to(z), self.std.to(z)
        return unconstrained_to_params(z * std + mean, self.angle_lo, self.angle_hi)

    def angle_to_z(self, degrees: torch.Tensor) -> torch.Tensor:
        """Angles in degrees ``[...]`` -> chart coordinates, elementwise with the statistics of the
        first angle (all angles' in a pooled chart): the fixed angles of a crystal family, for
        :meth:`~crystalflow.symmetry.lattice.LatticeConstraint.project` in the chart."""
        mean, std = self.mean[3].to(degrees), self.std[3].to(degrees)
        return (angles_to_logit(degrees, self.angle_lo, self.angle_hi) - mean) / std

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "angle_lo": self.angle_lo,
                "angle_hi": self.angle_hi}

    @classmethod
    def from_state_dict(cls, state: dict) -> "LatticeChart":
        """Read :meth:`state_dict`; also the pooled format of older space-group checkpoints
        (``length_mean``, ``length_std``, ``angle_mean``, ``angle_std``) and P1 checkpoints
        without a window (the Niggli window)."""
        if "length_mean" in state:
            window = (float(state.get("angle_lo", 0.0)), float(state.get("angle_hi", 180.0)))
            return cls.pooled(float(state["length_mean"]), float(state["length_std"]),
                              float(state["angle_mean"]), float(state["angle_std"]), angle_window=window)
        return cls(mean=torch.tensor(state["mean"], dtype=torch.float64),
                   std=torch.tensor(state["std"], dtype=torch.float64),
                   angle_lo=float(state.get("angle_lo", ANGLE_LO)), angle_hi=float(state.get("angle_hi", ANGLE_HI)))
