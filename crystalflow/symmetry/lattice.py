"""Crystal-family constraints on lattice parameters ``(a, b, c, alpha, beta, gamma)`` as projections.

The settings are those of :mod:`crystalflow.symmetry.groups`: monoclinic with unique axis b (``beta``
free), trigonal and hexagonal groups in hexagonal axes (``gamma = 120``), cubic ``a = b = c``.

Every constraint is "tied lengths are equal, some angles are fixed". The projection of a parameter
vector replaces tied lengths by their mean and fixed angles by their value; the projection of a
tangent vector (a velocity) is the linear part: tied components averaged, fixed angles zeroed. The
linear part is an orthogonal projector, so the projections also apply unchanged to any
representation that transforms each parameter separately (e.g. log-lengths): pass
``angle_transform`` to map the fixed angle values (degrees) into that representation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from crystalflow.errors import InputError
from crystalflow.manifolds.lattice import OPEN_ANGLE_WINDOW, LatticeChart
from crystalflow.symmetry.groups import CrystalFamily

__all__ = [
    "LatticeConstraint",
    "lattice_constraint",
    "project_lattice",
    "project_lattice_tangent",
    "lattice_violation",
    "family_index",
    "family_lattice_chart",
]

_FAMILIES = tuple(CrystalFamily)

# Groups of tied lengths (indices into a, b, c) and fixed angles (index into the 6-vector, degrees).
_TIES: dict[CrystalFamily, tuple[tuple[int, ...], ...]] = {
    CrystalFamily.TRICLINIC: ((0,), (1,), (2,)),
    CrystalFamily.MONOCLINIC: ((0,), (1,), (2,)),
    CrystalFamily.ORTHORHOMBIC: ((0,), (1,), (2,)),
    CrystalFamily.TETRAGONAL: ((0, 1), (2,)),
    CrystalFamily.HEXAGONAL: ((0, 1), (2,)),
    CrystalFamily.CUBIC: ((0, 1, 2),),
}
_FIXED: dict[CrystalFamily, dict[int, float]] = {
    CrystalFamily.TRICLINIC: {},
    CrystalFamily.MONOCLINIC: {3: 90.0, 5: 90.0},
    CrystalFamily.ORTHORHOMBIC: {3: 90.0, 4: 90.0, 5: 90.0},
    CrystalFamily.TETRAGONAL: {3: 90.0, 4: 90.0, 5: 90.0},
    CrystalFamily.HEXAGONAL: {3: 90.0, 4: 90.0, 5: 120.0},
    CrystalFamily.CUBIC: {3: 90.0, 4: 90.0, 5: 90.0},
}


@functools.lru_cache(maxsize=None)
def _family_tables() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """CPU float64 tables: ``(family_of_group [231], projector [6,6,6], mask [6,6], value [6,6])``."""
    from crystalflow.symmetry.groups import crystal_family

    family_of = torch.zeros(231, dtype=torch.long)
    for n in range(1, 231):
        family_of[n] = _FAMILIES.index(crystal_family(n))
    projector = torch.zeros(len(_FAMILIES), 6, 6, dtype=torch.float64)
    mask = torch.zeros(len(_FAMILIES), 6, dtype=torch.bool)
    value = torch.zeros(len(_FAMILIES), 6, dtype=torch.float64)
    for f, family in enumerate(_FAMILIES):
        for tie in _TIES[family]:
            for i in tie:
                for j in tie:
                    projector[f, i, j] = 1.0 / len(tie)
        for i in range(3, 6):
            if i in _FIXED[family]:
                mask[f, i] = True
                value[f, i] = _FIXED[family][i]
            else:
                projector[f, i, i] = 1.0
    return family_of, projector, mask, value


def family_index(space_group: torch.Tensor) -> torch.Tensor:
    """Index into ``tuple(CrystalFamily)`` of each space group.

    Args:
        space_group: ``[B]`` long space-group numbers.

    Returns:
        ``[B]`` long on the same device.

    Raises:
        InputError: a number outside 1-230.
    """
    sg = torch.as_tensor(space_group)
    if sg.numel() and (int(sg.min()) < 1 or int(sg.max()) > 230):
        bad = sg[(sg < 1) | (sg > 230)][0].item()
        raise InputError(f"space group must be an integer from 1 to 230, got {bad}")
    family_of = _family_tables()[0].to(sg.device)
    return family_of[sg.long()]


@dataclass(frozen=True)
class LatticeConstraint:
    """Per-crystal lattice constraints of a batch.

    Attributes:
        projector: ``[B, 6, 6]`` orthogonal projector onto the free directions (zero rows for fixed
            angles; tied lengths averaged).
        fixed_mask: ``[B, 6]`` bool, True for fixed angles.
        fixed_value: ``[B, 6]`` fixed angle values in degrees (0 where not fixed).
    """

    projector: torch.Tensor
    fixed_mask: torch.Tensor
    fixed_value: torch.Tensor

    def project(
        self,
        params: torch.Tensor,
        angle_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Project parameters ``[B, 6]`` onto the constrained set.

        Args:
            params: ``[B, 6]`` lattice parameters (or an elementwise transform of them).
            angle_transform: maps fixed angle values in degrees to the representation of ``params``
                (identity if None).

        Returns:
            ``[B, 6]`` projected parameters, same dtype and device as ``params``.
        """
        proj = self.projector.to(params.dtype)
        out = torch.einsum("bij,bj->bi", proj, params)
        value = self.fixed_value.to(params.dtype)
        if angle_transform is not None:
            value = angle_transform(value)
        return torch.where(self.fixed_mask, value, out)

    def project_tangent(self, velocity: torch.Tensor) -> torch.Tensor:
        """Project tangent vectors ``[B, 6]`` (velocities, noise) onto the free directions."""
        return torch.einsum("bij,bj->bi", self.projector.to(velocity.dtype), velocity)


def lattice_constraint(
    space_group: torch.Tensor, device: torch.device | str | None = None
) -> LatticeConstraint:
    """Constraints of a batch of space groups.

    Args:
        space_group: ``[B]`` long space-group numbers.
        device: device of the result (that of ``space_group`` if None).

    Returns:
        :class:`LatticeConstraint` with float64 tensors (cast on use).
    """
    sg = torch.as_tensor(space_group)
    device = sg.device if device is None else torch.device(device)
    fam = family_index(sg).to(device)
    _, projector, mask, value = _family_tables()
    return LatticeConstraint(
        projector=projector.to(device)[fam],
        fixed_mask=mask.to(device)[fam],
        fixed_value=value.to(device)[fam],
    )


def project_lattice(
    params: torch.Tensor,
    space_group: torch.Tensor,
    angle_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Project lattice parameters onto the crystal-family constraints of their space groups.

    Args:
        params: ``[B, 6]`` ``(a, b, c, alpha, beta, gamma)`` in Angstrom and degrees (or an
            elementwise transform, see ``angle_transform``).
        space_group: ``[B]`` space-group numbers.
        angle_transform: maps fixed angles in degrees to the representation of ``params``.

    Returns:
        ``[B, 6]`` projected parameters.
    """
    return lattice_constraint(space_group, params.device).project(params, angle_transform)


def project_lattice_tangent(velocity: torch.Tensor, space_group: torch.Tensor) -> torch.Tensor:
    """Project lattice-parameter velocities ``[B, 6]`` onto the constraints' free directions."""
    return lattice_constraint(space_group, velocity.device).project_tangent(velocity)


def lattice_violation(params: torch.Tensor, space_group: torch.Tensor) -> torch.Tensor:
    """Largest absolute deviation ``[B]`` of each lattice from its family constraints."""
    return (params - project_lattice(params, space_group)).abs().amax(dim=-1)


def family_lattice_chart(params: torch.Tensor, space_group: torch.Tensor, min_std: float = 1e-2) -> LatticeChart:
    """The lattice chart of conventional cells: the open angle window, statistics pooled within
    lengths and within angles (so the family constraints stay linear in the chart) and fitted on
    the free angles only.

    Args:
        params: ``[B, 6]`` training lattice parameters; space_group: ``[B]`` their space groups.
        min_std: floor of the standard deviations.
    """
    free = ~lattice_constraint(space_group).fixed_mask[:, 3:]
    return LatticeChart.fit(params, min_std, angle_window=OPEN_ANGLE_WINDOW, pooled=True, free_angles=free)
