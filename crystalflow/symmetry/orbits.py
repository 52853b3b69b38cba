"""Orbit mathematics on batches (torch): Wyckoff parameters <-> atoms, locating points on their
Wyckoff subspaces, drift removal and the symmetric field of a network.

Batched twins of the numpy functions of :mod:`crystalflow.symmetry.wyckoff`
(:meth:`WyckoffPosition.point <crystalflow.symmetry.wyckoff.WyckoffPosition.point>` and
:func:`~crystalflow.symmetry.wyckoff.locate_on_wyckoff`), which work on one Wyckoff position at a
time; the tests check that both give the same answers. Every orbit ``o`` of a
:class:`~crystalflow.symmetry.batch.SymmetryBatch` is ``x_i = R_{c(i)} (W_o u_o + b_o) + t_{c(i)}``
with free parameters ``u_o`` (``W_o`` zero-padded to ``[3, 3]``, parameters past ``dof_o`` zero).

Origin drift. In polar groups (P1, P4mm, Cmc2_1, ...) a uniform translation ``s`` with ``R s = s``
for every rotation moves every atom inside its Wyckoff subspace and gives the same crystal. The
mean of an equivariant field is such a translation (``sum_j v_j = R_g sum_i v_i``) and is zero for
centrosymmetric groups, so subtracting it (:func:`remove_drift`) keeps the field equivariant and
on the Wyckoff tangent spaces.
"""

from __future__ import annotations

import torch

from crystalflow.symmetry.average import group_average_vectors, wrap_frac
from crystalflow.symmetry.batch import SymmetryBatch
from crystalflow.symmetry.lattice import lattice_constraint

__all__ = [
    "wyckoff_points", "expand_orbits", "orbit_first_atom", "wyckoff_solve", "locate_on_orbits",
    "orbit_parameters", "aligned_orbit_parameters", "crystal_mean", "remove_drift", "symmetric_field",
]

#: integer shifts ``{-2..2}^3`` searched when locating a point (coefficients of ``W`` are at most 2)
_SHIFTS = torch.stack(torch.meshgrid(*[torch.arange(-2, 3, dtype=torch.float64)] * 3, indexing="ij"),
                      -1).reshape(-1, 3)


def wyckoff_points(params: torch.Tensor, sym: SymmetryBatch) -> torch.Tensor:
    """Orbit representatives ``W u + b`` (modulo 1) from free parameters.

    Args:
        params: ``[M, 3]`` free parameters ``u`` of every orbit; only the first ``k`` of each row
            are used (``W`` is zero-padded), the rest are ignored.
        sym: symmetry fields of the batch (``M`` orbits).

    Returns:
        ``[M, 3]`` representatives in ``[0, 1)``.
    """
    basis = sym.orbit_basis.to(params.dtype)
    rep = (basis * params[:, None, :]).sum(-1) + sym.orbit_offset.to(params.dtype)
    return wrap_frac(rep)


def expand_orbits(rep: torch.Tensor, sym: SymmetryBatch) -> torch.Tensor:
    """Atoms of every orbit from its representative: ``x_i = R_{c(i)} rep_{o(i)} + t_{c(i)}``.

    Args:
        rep: ``[M, 3]`` orbit representatives (on their Wyckoff subspaces).
        sym: symmetry fields of the batch.

    Returns:
        ``[N, 3]`` fractional coordinates in ``[0, 1)``, in the batch's atom order.
    """
    x = rep.index_select(0, sym.orbit)
    rot = sym.atom_rot.to(rep.dtype)
    out = (rot * x[:, None, :]).sum(-1) + sym.atom_trans.to(rep.dtype)
    return wrap_frac(out)


def orbit_first_atom(sym: SymmetryBatch) -> torch.Tensor:
    """``[M]`` long index of the first atom (the representative) of every orbit."""
    size = sym.orbit_size
    return torch.cumsum(size, 0) - size


def wyckoff_solve(x: torch.Tensor, basis: torch.Tensor, dof: torch.Tensor) -> torch.Tensor:
    """Least-squares parameters ``u`` with ``W_r u = x`` (fractional metric).

    Args:
        x: ``[R, ..., 3]`` vectors.
        basis: ``[R, 3, 3]`` one Wyckoff basis per leading row (zero-padded columns).
        dof: ``[R]`` long, free parameters of each row.

    Returns:
        ``[R, ..., 3]`` parameters (zero past ``dof``).
    """
    lead = (x.shape[0],) + (1,) * (x.dim() - 2)
    basis = basis.to(x)
    pad = (torch.arange(3, device=x.device)[None, :] >= dof[:, None]).to(x)  # [R, 3]
    gram = basis.transpose(1, 2) @ basis + torch.diag_embed(pad)
    pinv = torch.linalg.solve(gram, basis.transpose(1, 2))  # [R, 3, 3], one solve per row
    u = (pinv.reshape(*lead, 3, 3) @ x.unsqueeze(-1)).squeeze(-1)
    return u * (1 - pad).reshape(*lead, 3)


def locate_on_orbits(x: torch.Tensor, sym: SymmetryBatch, rows: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest point of an orbit's Wyckoff subspace (modulo 1) to each point, batched.

    The twin of :func:`~crystalflow.symmetry.wyckoff.locate_on_wyckoff` with the fractional metric.

    Args:
        x: ``[R, 3]`` fractional coordinates.
        sym: symmetry fields of the batch.
        rows: ``[R]`` long orbit of each point (default: one point per orbit, ``R = M``).

    Returns:
        ``(u [R, 3] float64 in [0, 1) (zero past dof), dist2 [R] float64)``: free parameters of the
        nearest subspace point and the squared fractional distance to it (0 on the subspace).
    """
    x = x.double()
    basis, offset, dof = sym.orbit_basis, sym.orbit_offset, sym.orbit_dof
    if rows is not None:
        basis, offset, dof = (v.index_select(0, rows) for v in (basis, offset, dof))
    basis = basis.to(x)
    diff = x[:, None, :] - offset.to(x)[:, None, :] + _SHIFTS.to(x)[None]  # [R, S, 3]
    u = wyckoff_solve(diff, basis, dof)  # [R, S, 3]
    resid = ((diff - torch.einsum("rij,rsj->rsi", basis, u)) ** 2).sum(-1)
    dist, best = resid.min(1)
    return wrap_frac(u[torch.arange(u.shape[0], device=x.device), best]), dist


def orbit_parameters(rep: torch.Tensor, sym: SymmetryBatch) -> torch.Tensor:
    """Free parameters ``u [M, 3]`` float64 in ``[0, 1)`` (zero past dof) with ``W u + b = rep``
    modulo 1, for representatives ``rep [M, 3]`` on their Wyckoff subspaces."""
    return locate_on_orbits(rep, sym)[0]


def aligned_orbit_parameters(frac: torch.Tensor, u0: torch.Tensor, sym: SymmetryBatch,
                             tol: float = 1e-8) -> torch.Tensor:
    """Target parameters ``u1 [M, 3]`` of each data orbit, chosen nearest to ``u0 [M, 3]``.

    An orbit's points are all the same crystal; every point of the data orbit (``frac [N, 3]``,
    atoms in layout order) that lies on the orbit's Wyckoff subspace gives a valid ``u1`` (e.g.
    ``z`` and ``-z`` for ``(0, 0, z)`` in I4/mmm, all four points of a general position in P2_1/c).
    Taking the one nearest to the prior sample (shortest wrapped ``W (u1 - u0)``) is an
    optimal-transport-style coupling over that finite choice: shorter, less ambiguous conditional
    paths, same endpoint crystal. Batched: one padded ``[M, max orbit size]`` argmin.
    """
    u, dist = locate_on_orbits(frac, sym, sym.orbit)  # [N, 3], [N]
    du = u - u0.to(u).index_select(0, sym.orbit)
    du = du - torch.round(du)
    length = ((sym.orbit_basis.to(u).index_select(0, sym.orbit) @ du.unsqueeze(-1)) ** 2).sum((-1, -2))
    inf = torch.full_like(length, float("inf"))
    cost = torch.where(dist < tol, length, inf)
    size = sym.orbit_size
    slot = torch.arange(int(size.max()), device=frac.device)
    idx = (orbit_first_atom(sym)[:, None] + slot[None, :]).clamp(max=frac.shape[0] - 1)  # [M, S]
    padded = torch.where(slot[None, :] < size[:, None], cost[idx], inf[idx])  # an orbit's atoms are contiguous
    pick = idx.gather(1, padded.argmin(1, keepdim=True)).squeeze(1)  # representative always qualifies
    return u.index_select(0, pick)


def crystal_mean(v: torch.Tensor, sym: SymmetryBatch) -> torch.Tensor:
    """``[B, 3]`` mean over each crystal's atoms of a per-atom field ``v [N, 3]``."""
    b = sym.num_atoms.shape[0]
    index = sym.batch
    count = v.new_zeros(b).scatter_add_(0, index, v.new_ones(v.shape[0])).clamp(min=1)
    total = v.new_zeros(b, v.shape[1]).scatter_add_(0, index[:, None].expand_as(v), v)
    return total / count[:, None]


def remove_drift(v: torch.Tensor, sym: SymmetryBatch) -> torch.Tensor:
    """Subtract each crystal's mean from an equivariant per-atom field ``v [N, 3]``.

    For a group-equivariant field the mean is a translation along the polar directions (zero in
    centrosymmetric groups), so the result is still equivariant and on the Wyckoff tangent spaces.
    """
    return v - crystal_mean(v, sym).index_select(0, sym.batch)


def symmetric_field(out: dict[str, torch.Tensor], sym: SymmetryBatch) -> dict[str, torch.Tensor]:
    """A network's raw ``{frac [N, 3], lattice [B, 6]}`` made a field of the symmetric flow:
    fractions group-averaged (equivariant, on the Wyckoff tangent spaces) and drift-free, lattice
    velocities projected onto the crystal-family constraints."""
    frac = remove_drift(group_average_vectors(out["frac"], sym), sym)
    lat = lattice_constraint(sym.space_group, out["lattice"].device).project_tangent(out["lattice"])
    return {"frac": frac, "lattice": lat}
