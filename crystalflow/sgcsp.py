"""Space-group conditioned crystal structure prediction (SGFM-style flow matching).

Conditions: atom types, space group and Wyckoff template (letter and element of every orbit).
Crystals live in their idealised *conventional* cell with atoms in the Wyckoff layout's order
(:mod:`crystalflow.symmetry`).

Fractional coordinates. Every orbit ``o`` is ``x_i = R_{c(i)} (W_o u_o + b_o) + t_{c(i)}`` with
free parameters ``u_o`` on the torus ``[0, 1)^{k_o}``. The prior draws ``u_o`` uniformly (uniform on
the Wyckoff subspace) and expands the orbits; the conditional path is the straight line
``u_t = u_0 + t wrap(u_1 - u_0)`` in the parameters, expanded to all atoms, so every ``x_t`` is
exactly on its Wyckoff subspaces and its target velocity ``d_i = R_{c(i)} W_o wrap(u_1 - u_0)`` is
an equivariant field. (A per-atom geodesic on the 3-torus would not do: ``wrap`` does not commute
with ``W`` when ``W`` has a coefficient 2, e.g. ``(x, 2x, z)``.) The network's fractional output
is group-averaged (:func:`group_average_vectors`, the orthogonal projection onto equivariant
fields), so the learned flow moves every orbit inside its Wyckoff subspace; sampling optionally
re-projects positions with :func:`symmetrize_frac` after each step against float32 drift.

Coupling. Several points of an orbit can lie on its Wyckoff subspace (``z`` and ``-z`` for
``(0, 0, z)`` in I4/mmm, all four points of a general position in P2_1/c), so the data gives
several equally valid ``u_1``. Training pairs each prior sample with the nearest of them
(:func:`aligned_orbit_parameters`, ``SGCSPConfig.align_orbits``): the endpoint is the same crystal
(atoms relabelled inside the orbit), the conditional paths are shorter (on MP-20 train the mean
squared target velocity drops from 0.139 to 0.055) and less ambiguous, and the prior is unchanged.
Off by default: on MP-20 it did not raise the match rate (BENCHMARKS.md, 32,000 aligned vs 36,000
plain fine-tuning steps from the same weights: 56.7% vs 57.2% on 1,000 validation rows).

Origin drift. In polar groups (P1, P4mm, Cmc2_1, ...) the origin floats along the polar
directions: a uniform translation ``s`` with ``R s = s`` for every rotation moves every atom inside
its Wyckoff subspace and gives the same crystal. A translation-invariant network cannot see that
component of the target, so it is removed: the path's velocity is made *mean-free per crystal*
(:func:`remove_drift`) and the orbit parameters move by the matching ``W^+ s``, i.e. the path ends
on the data crystal translated along its polar directions. The mean of an equivariant field is
itself fixed by every rotation (``sum_j v_j = R_g sum_i v_i``), so subtracting it keeps the field
equivariant and on the Wyckoff tangent spaces, and it is zero for centrosymmetric groups. The
network's group-averaged output is made mean-free the same way.

Lattice. The crystal-family constraints (tied lengths, fixed angles) are linear in an elementwise
chart ``(log a, log b, log c, logit angles)`` standardised with one mean/std shared by the three
lengths and one shared by the three angles, so "tied lengths equal" stays "tied chart coordinates
equal" and :func:`project_lattice` / :func:`project_lattice_tangent` apply in the chart. The angle
interval of the logit is (0, 180) degrees, not the P1 chart's (59, 121): conventional cells are
not Niggli cells; spglib's standard monoclinic cells have ``beta`` up to 135 degrees in the MP-20 train split
(437 of 15,837 cells have a free angle above 121), and
hexagonal cells sit at ``gamma = 120``, on the P1 window's edge. Prior: standard normal in the
chart, projected; velocity: projected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch_geometric.utils import scatter

from crystalflow.crystals.batch import CrystalBatch
from crystalflow.losses import LossOutput
from crystalflow.models.sgnet import SGConditions
from crystalflow.symmetry import (
    SymmetryBatch,
    WyckoffTemplate,
    collate_symmetry,
    crystal_symmetry,
    expand_orbits,
    group_average_vectors,
    lattice_constraint,
    symmetrize_frac,
    wrap_frac,
    wyckoff_points,
)

__all__ = ["SGCSPConfig", "SGCSPFlow", "FamilyLatticeChart", "sg_conditions", "orbit_parameters",
           "orbit_first_atom", "aligned_orbit_parameters", "remove_drift", "symmetric_field"]

ANGLE_LO, ANGLE_HI = 0.0, 180.0
_EPS = 1e-6


def _to_unconstrained(params: torch.Tensor) -> torch.Tensor:
    lengths = params[..., :3].clamp_min(_EPS).log()
    s = ((params[..., 3:] - ANGLE_LO) / (ANGLE_HI - ANGLE_LO)).clamp(_EPS, 1 - _EPS)
    return torch.cat([lengths, torch.logit(s)], dim=-1)


def _to_params(u: torch.Tensor) -> torch.Tensor:
    angles = ANGLE_LO + (ANGLE_HI - ANGLE_LO) * torch.sigmoid(u[..., 3:])
    return torch.cat([u[..., :3].exp(), angles], dim=-1)


@dataclass(frozen=True)
class FamilyLatticeChart:
    """Lattice chart whose standardisation is shared within lengths and within angles.

    Attributes:
        length_mean / length_std: statistics of ``log`` lengths over the training set.
        angle_mean / angle_std: statistics of the logit angles over the *free* angles only.
    """

    length_mean: float
    length_std: float
    angle_mean: float
    angle_std: float

    @classmethod
    def fit(cls, params: torch.Tensor, space_groups: torch.Tensor, min_std: float = 1e-2) -> "FamilyLatticeChart":
        u = _to_unconstrained(params.double())
        lengths = u[:, :3].reshape(-1)
        free = ~lattice_constraint(space_groups).fixed_mask[:, 3:]
        angles = u[:, 3:][free]
        if angles.numel() < 2:
            angles = torch.zeros(2, dtype=torch.float64)
        return cls(float(lengths.mean()), max(float(lengths.std()), min_std),
                   float(angles.mean()), max(float(angles.std()), min_std))

    def _stats(self, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor([self.length_mean] * 3 + [self.angle_mean] * 3, dtype=ref.dtype, device=ref.device)
        std = torch.tensor([self.length_std] * 3 + [self.angle_std] * 3, dtype=ref.dtype, device=ref.device)
        return mean, std

    def to_z(self, params: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(params)
        return (_to_unconstrained(params) - mean) / std

    def to_params(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(z)
        return _to_params(z * std + mean)

    def angle_to_z(self, degrees: torch.Tensor) -> torch.Tensor:
        """Fixed angle values (degrees) -> chart coordinate (for ``project_lattice``)."""
        s = ((degrees - ANGLE_LO) / (ANGLE_HI - ANGLE_LO)).clamp(_EPS, 1 - _EPS)
        return (torch.logit(s) - self.angle_mean) / self.angle_std

    def state_dict(self) -> dict:
        return asdict(self) | {"angle_lo": ANGLE_LO, "angle_hi": ANGLE_HI}

    @classmethod
    def from_state_dict(cls, state: dict) -> "FamilyLatticeChart":
        return cls(float(state["length_mean"]), float(state["length_std"]),
                   float(state["angle_mean"]), float(state["angle_std"]))


@dataclass(frozen=True)
class SGCSPConfig:
    """Loss weights and default sampling settings of the space-group conditioned flow."""

    frac_weight: float = 1.0
    lattice_weight: float = 0.1
    steps: int = 100
    method: str = "euler"
    symmetrize: bool = True
    anti_annealing_frac: float = 0.0
    anti_annealing_lattice: float = 0.0
    align_orbits: bool = False  # training coupling: nearest equivalent orbit point as the target

    def to_dict(self) -> dict:
        return asdict(self)


def sg_conditions(atom_types: torch.Tensor, sym: SymmetryBatch) -> SGConditions:
    """Network conditions of a space-group conditioned batch."""
    return SGConditions(atom_types=atom_types, batch=sym.batch, num_atoms=sym.num_atoms,
                        symmetry=sym)


def orbit_first_atom(sym: SymmetryBatch) -> torch.Tensor:
    """``[M]`` index of the first atom (the representative) of every orbit."""
    size = sym.orbit_size
    return torch.cumsum(size, 0) - size


_SHIFTS = torch.stack(torch.meshgrid(*[torch.arange(-2, 3, dtype=torch.float64)] * 3, indexing="ij"), -1).reshape(-1, 3)


def _wyckoff_solve(x: torch.Tensor, basis: torch.Tensor, dof: torch.Tensor) -> torch.Tensor:
    """Least-squares parameters ``u [R, ..., 3]`` with ``W_r u = x`` for vectors ``x [R, ..., 3]``,
    one Wyckoff basis ``basis [R, 3, 3]`` (zero-padded columns) with ``dof [R]`` free parameters
    per leading row (fractional metric; parameters past ``dof`` are zero)."""
    lead = (x.shape[0],) + (1,) * (x.dim() - 2)
    basis = basis.to(x)
    pad = (torch.arange(3, device=x.device)[None, :] >= dof[:, None]).to(x)  # [R, 3]
    gram = basis.transpose(1, 2) @ basis + torch.diag_embed(pad)
    pinv = torch.linalg.solve(gram, basis.transpose(1, 2))  # [R, 3, 3], one solve per row
    u = (pinv.reshape(*lead, 3, 3) @ x.unsqueeze(-1)).squeeze(-1)
    return u * (1 - pad).reshape(*lead, 3)


def _locate(x: torch.Tensor, sym: SymmetryBatch, rows: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Parameters ``u [R, 3]`` in ``[0, 1)`` of the points ``x [R, 3]`` on their orbit's Wyckoff
    subspace (row ``r`` on orbit ``rows[r]``, default one row per orbit) and the squared
    fractional distance ``[R]`` of each point from that subspace (0 when it lies on it)."""
    x = x.double()
    basis, offset, dof = sym.orbit_basis, sym.orbit_offset, sym.orbit_dof
    if rows is not None:
        basis, offset, dof = (v.index_select(0, rows) for v in (basis, offset, dof))
    basis = basis.to(x)
    diff = x[:, None, :] - offset.to(x)[:, None, :] + _SHIFTS.to(x)[None]  # [R, S, 3]
    u = _wyckoff_solve(diff, basis, dof)  # [R, S, 3]
    resid = ((diff - torch.einsum("rij,rsj->rsi", basis, u)) ** 2).sum(-1)
    dist, best = resid.min(1)
    return wrap_frac(u[torch.arange(u.shape[0], device=x.device), best]), dist


def orbit_parameters(rep: torch.Tensor, sym: SymmetryBatch) -> torch.Tensor:
    """Free parameters ``u [M, 3]`` in ``[0, 1)`` (zero past ``dof``) with ``W u + b = rep`` mod 1.

    Batched version of ``locate_on_wyckoff`` (fractional metric): integer shifts in ``{-2..2}^3``
    are searched, which covers every table entry (coefficients of ``W`` are at most 2).
    """
    return _locate(rep, sym)[0]


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
    u, dist = _locate(frac, sym, sym.orbit)  # [N, 3], [N]
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
    return scatter(v, sym.batch, dim=0, dim_size=sym.num_atoms.shape[0], reduce="mean")


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


class SGCSPFlow:
    """Flow matching for CSP conditioned on a space group and a Wyckoff template.

    Args:
        model: ``model(x_t, t, SGConditions) -> {frac [N, 3], lattice [B, 6]}`` (e.g. SGNet).
        chart: a :class:`FamilyLatticeChart` fitted on the training set.
        config: loss weights and sampling defaults.
    """

    def __init__(self, model: nn.Module, chart: FamilyLatticeChart, config: SGCSPConfig = SGCSPConfig()) -> None:
        self.model = model
        self.chart = chart
        self.config = config

    # -- constrained fields ---------------------------------------------------------------------

    def velocity(self, x: dict[str, torch.Tensor], t: torch.Tensor, cond: SGConditions) -> dict[str, torch.Tensor]:
        """The model's field made symmetric: group-averaged fractions, family-projected lattice."""
        return symmetric_field(self.model(x, t, cond), cond.symmetry)

    def project_lattice_z(self, z: torch.Tensor, sym: SymmetryBatch) -> torch.Tensor:
        """Project chart coordinates ``[B, 6]`` onto the crystal-family constraints."""
        return lattice_constraint(sym.space_group, z.device).project(z, self.chart.angle_to_z)

    def prior(self, sym: SymmetryBatch, dtype: torch.dtype = torch.float32,
              generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``x0``: orbit parameters ``u [M, 3]`` uniform, atoms ``frac [N, 3]``, lattice ``[B, 6]``."""
        dev = sym.space_group.device
        m, b = sym.orbit_size.shape[0], sym.space_group.shape[0]
        u = torch.rand(m, 3, generator=generator, dtype=torch.float64, device=dev)
        u = u * (torch.arange(3, device=dev)[None, :] < sym.orbit_dof[:, None])
        frac = expand_orbits(wyckoff_points(u, sym), sym).to(dtype)
        lat = torch.randn(b, 6, generator=generator, dtype=torch.float64, device=dev)
        lat = self.project_lattice_z(lat, sym).to(dtype)
        return {"u": u, "frac": frac, "lattice": lat}

    # -- training -------------------------------------------------------------------------------

    def path(self, x0: dict, batch: CrystalBatch, t: torch.Tensor) -> tuple[dict, dict]:
        """Points ``x_t`` and target velocities of the conditional path (per-crystal times ``t``)."""
        sym = batch.symmetry
        dtype = batch.frac.dtype
        if self.config.align_orbits:
            u1 = aligned_orbit_parameters(batch.frac.double(), x0["u"], sym)
        else:
            u1 = orbit_parameters(batch.frac.double().index_select(0, orbit_first_atom(sym)), sym)
        du = u1 - x0["u"]
        du = du - torch.round(du)  # shortest way round the parameter torus
        d_rep = (sym.orbit_basis * du[:, None, :]).sum(-1)  # W du  [M, 3]
        d = (sym.atom_rot * d_rep.index_select(0, sym.orbit)[:, None, :]).sum(-1)  # R_c W du
        # no drift along the polar directions: end on the data translated by -mean(d)
        drift = crystal_mean(d, sym)
        du = du - _wyckoff_solve(drift.index_select(0, sym.orbit_batch), sym.orbit_basis, sym.orbit_dof)
        d = d - drift.index_select(0, sym.batch)
        t64 = t.double()
        u_t = x0["u"] + t64[sym.orbit_batch][:, None] * du
        frac_t = expand_orbits(wyckoff_points(u_t, sym), sym)
        z1 = self.chart.to_z(batch.lattice.double())
        z0 = x0["lattice"].double()
        z_t = z0 + t64[:, None] * (z1 - z0)
        x_t = {"frac": frac_t.to(dtype), "lattice": z_t.to(dtype)}
        target = {"frac": d.to(dtype), "lattice": (z1 - z0).to(dtype)}
        return x_t, target

    def loss(self, batch: CrystalBatch, generator: torch.Generator | None = None) -> LossOutput:
        """CFM loss: squared error of the symmetrised field against the path's velocity."""
        sym = batch.symmetry
        if sym is None:
            raise ValueError("the space-group conditioned flow needs batches with a symmetry field")
        x0 = self.prior(sym, dtype=batch.frac.dtype, generator=generator)
        t = torch.rand(batch.num_crystals, generator=generator, dtype=batch.frac.dtype, device=batch.device)
        x_t, target = self.path(x0, batch, t)
        pred = self.velocity(x_t, t, sg_conditions(batch.atom_types, sym))
        parts = {}
        total = 0.0
        for k, w in (("frac", self.config.frac_weight), ("lattice", self.config.lattice_weight)):
            sq = ((pred[k] - target[k]) ** 2).sum(-1).mean()
            parts[k] = float(sq.detach())
            total = total + w * sq
        return LossOutput(total=total, parts=parts)

    # -- sampling -------------------------------------------------------------------------------

    def path_point(self, x0: dict, start: dict[str, torch.Tensor], sym: SymmetryBatch, t: float,
                   dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """The conditional path's point at time ``t`` between the prior sample ``x0`` and a known
        crystal ``start`` (``representatives [M, 3]``, ``lattice [B, 6]`` parameters): orbit
        parameters ``u0 + t wrap(u1 - u0)``, chart ``z0 + t (z1 - z0)``, both projected."""
        u1 = orbit_parameters(start["representatives"].to(sym.orbit_basis), sym)
        du = u1 - x0["u"]
        u_t = x0["u"] + t * (du - torch.round(du))
        frac = expand_orbits(wyckoff_points(u_t, sym), sym)
        z1 = self.chart.to_z(start["lattice"].to(torch.float64).to(x0["lattice"].device))
        z0 = x0["lattice"].double()
        z = self.project_lattice_z(z0 + t * (z1 - z0), sym)
        return {"frac": frac.to(dtype), "lattice": z.to(dtype)}

    @torch.no_grad()
    def sample(
        self, templates: Sequence[WyckoffTemplate], *, steps: int | None = None,
        method: str | None = None, symmetrize: bool | None = None,
        anti_annealing: dict[str, float] | None = None, generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
        callback=None, start: dict[str, torch.Tensor] | None = None, start_time: float = 0.0,
    ) -> CrystalBatch:
        """Integrate the symmetrised flow from the symmetric prior.

        Args:
            templates: one Wyckoff template per crystal.
            steps / method: fixed-step solver (``euler`` or ``midpoint``); defaults from config.
            symmetrize: re-project positions onto the symmetric set after every step.
            callback: ``callback(state, t)`` after every step (tests check the invariants there).
            start: a known crystal per template to start from part-way (DiffCSP++-style
                template-started sampling): ``{"representatives": [M, 3]`` one point per orbit on
                its Wyckoff subspace, ``"lattice": [B, 6]`` parameters``}``. The state at
                ``start_time`` is the conditional path's point between a prior sample and this
                crystal, and the flow integrates from there to 1 with ``ceil(steps * (1 -
                start_time))`` steps of the same size as a full run's.
            start_time: ``t0`` in ``[0, 1)`` (0 with ``start``: the start is forgotten).

        Returns:
            Conventional cells as a CrystalBatch (lattice as parameters, ``symmetry`` set).
        """
        cfg = self.config
        layouts = [crystal_symmetry(t) for t in templates]
        sym = collate_symmetry(layouts).to(device)
        atom_types = torch.cat([lay.atom_types for lay in layouts]).to(device)
        steps = steps or cfg.steps
        method = method or cfg.method
        if method not in ("euler", "midpoint"):
            raise ValueError(f"unknown solver {method!r} for the space-group flow; use euler or midpoint")
        symmetrize = cfg.symmetrize if symmetrize is None else symmetrize
        if anti_annealing is None:
            anti_annealing = {"frac": cfg.anti_annealing_frac, "lattice": cfg.anti_annealing_lattice}
        cond = sg_conditions(atom_types, sym)
        x0 = self.prior(sym, dtype=dtype, generator=generator)
        x = {"frac": x0["frac"], "lattice": x0["lattice"]}
        b = sym.space_group.shape[0]
        t_start = 0.0
        if start is not None:
            if not 0.0 <= start_time < 1.0:
                raise ValueError(f"start_time must be in [0, 1), got {start_time}")
            x = self.path_point(x0, start, sym, start_time, dtype)
            t_start = start_time

        def field(state, t: float):
            tt = torch.full((b,), t, dtype=dtype, device=sym.space_group.device)
            v = self.velocity(state, tt, cond)
            return {k: u * (1.0 + anti_annealing.get(k, 0.0) * t) for k, u in v.items()}

        def step(state, v, h):
            frac = wrap_frac(state["frac"] + h * v["frac"])
            lat = state["lattice"] + h * v["lattice"]
            if symmetrize:
                frac = symmetrize_frac(frac, sym)
                lat = self.project_lattice_z(lat, sym)
            return {"frac": frac, "lattice": lat}

        n = max(1, math.ceil(steps * (1.0 - t_start) - 1e-9))
        h = (1.0 - t_start) / n
        for i in range(n):
            t = t_start + i * h
            if method == "euler":
                x = step(x, field(x, t), h)
            else:
                x_mid = step(x, field(x, t), h / 2)
                x = step(x, field(x_mid, t + h / 2), h)
            if callback is not None:
                callback(x, t + h)
        z = self.project_lattice_z(x["lattice"].double(), sym)
        params = self.chart.to_params(z)
        params = lattice_constraint(sym.space_group, params.device).project(params)
        return CrystalBatch(frac=x["frac"], lattice=params.to(dtype), atom_types=atom_types,
                            batch=sym.batch, num_atoms=sym.num_atoms, symmetry=sym)
