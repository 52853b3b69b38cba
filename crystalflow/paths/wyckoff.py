"""The conditional path of space-group conditioned flows: straight lines in free Wyckoff parameters.

Every orbit ``o`` is ``x_i = R_{c(i)} (W_o u_o + b_o) + t_{c(i)}`` with free parameters ``u_o`` on
the torus ``[0, 1)^{k_o}`` (:mod:`crystalflow.symmetry.orbits`). The path is the straight line
``u_t = u_0 + t wrap(u_1 - u_0)`` in the parameters, expanded to all atoms, so every ``x_t`` lies
exactly on its Wyckoff subspaces and its velocity ``d_i = R_{c(i)} W_o wrap(u_1 - u_0)`` is an
equivariant field. (A per-atom geodesic on the 3-torus would not do: ``wrap`` does not commute
with ``W`` when ``W`` has a coefficient 2, e.g. ``(x, 2x, z)``.)

Drift-free paths (training). A translation-invariant network cannot see the component of the
target along the polar directions of the group (a uniform translation gives the same crystal), so
the velocity is made mean-free per crystal and the parameters move by the matching ``W^+ s``: the
path ends on the data crystal translated along its polar directions
(:func:`~crystalflow.symmetry.orbits.remove_drift`). Template-started sampling uses the plain path
(``drift_free=False``), which ends on the given crystal itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from crystalflow.symmetry.batch import SymmetryBatch
from crystalflow.symmetry.orbits import crystal_mean, expand_orbits, wyckoff_points, wyckoff_solve

__all__ = ["WyckoffPath", "WyckoffPathSample"]


@dataclass(frozen=True)
class WyckoffPathSample:
    """A point of the Wyckoff-parameter path and its velocity (float64).

    Attributes:
        u_t: ``[M, 3]`` free parameters of every orbit at its crystal's time.
        x_t: ``[N, 3]`` atoms in ``[0, 1)`` (``u_t`` expanded to the orbits).
        du: ``[M, 3]`` parameter velocity (constant along the path).
        dx_t: ``[N, 3]`` atom velocity ``R_{c(i)} W_o du_o``, an equivariant field.
    """

    u_t: torch.Tensor
    x_t: torch.Tensor
    du: torch.Tensor
    dx_t: torch.Tensor


class WyckoffPath:
    """Straight lines in free Wyckoff parameters, expanded to atoms.

    Args:
        drift_free: remove each crystal's mean velocity (the polar drift) from the path.
    """

    def __init__(self, drift_free: bool = True) -> None:
        self.drift_free = drift_free

    def velocity(self, u0: torch.Tensor, u1: torch.Tensor, sym: SymmetryBatch
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(du [M, 3], dx [N, 3])``: parameter and atom velocities from ``u0`` to ``u1``
        (``[M, 3]`` float64, the shortest way round the parameter torus)."""
        du = u1 - u0
        du = du - torch.round(du)
        d_rep = (sym.orbit_basis * du[:, None, :]).sum(-1)  # W du  [M, 3]
        d = (sym.atom_rot * d_rep.index_select(0, sym.orbit)[:, None, :]).sum(-1)  # R_c W du
        if self.drift_free:  # end on the data translated by -mean(d) along the polar directions
            drift = crystal_mean(d, sym)
            du = du - wyckoff_solve(drift.index_select(0, sym.orbit_batch), sym.orbit_basis, sym.orbit_dof)
            d = d - drift.index_select(0, sym.batch)
        return du, d

    def sample(self, u0: torch.Tensor, u1: torch.Tensor, t: torch.Tensor | float,
               sym: SymmetryBatch) -> WyckoffPathSample:
        """The path's point at per-crystal times.

        Args:
            u0 / u1: ``[M, 3]`` float64 free parameters of the prior sample and the data.
            t: ``[B]`` times in [0, 1] (cast to float64), or one float for every crystal.
            sym: symmetry fields of the batch.
        """
        du, d = self.velocity(u0, u1, sym)
        if isinstance(t, torch.Tensor):
            t = t.double().index_select(0, sym.orbit_batch)[:, None]
        u_t = u0 + t * du
        return WyckoffPathSample(u_t=u_t, x_t=expand_orbits(wyckoff_points(u_t, sym), sym), du=du, dx_t=d)
