"""Space-group conditioned crystal structure prediction (SGFM-style flow matching).

Conditions: atom types, space group and Wyckoff template (letter and element of every orbit).
Crystals live in their idealised *conventional* cell with atoms in the Wyckoff layout's order
(:mod:`crystalflow.symmetry`).

Fractional coordinates. Every orbit ``o`` is ``x_i = R_{c(i)} (W_o u_o + b_o) + t_{c(i)}`` with
free parameters ``u_o`` on the torus ``[0, 1)^{k_o}``. The prior draws ``u_o`` uniformly (uniform on
the Wyckoff subspace, :func:`~crystalflow.symmetry.sample_orbit_parameters`) and expands the orbits;
the conditional path is the drift-free straight line in the parameters
(:class:`~crystalflow.paths.WyckoffPath`), so every ``x_t`` is exactly on its Wyckoff subspaces and
its target velocity is an equivariant field. The network's fractional output is group-averaged
and made drift-free (:func:`~crystalflow.symmetry.symmetric_field`, the orthogonal projection onto
equivariant fields), so the learned flow moves every orbit inside its Wyckoff subspace; sampling
(:func:`~crystalflow.solvers.integrate`, Euler, midpoint or RK4) optionally re-projects positions
with :func:`~crystalflow.symmetry.symmetrize_frac` after each step against float32 drift.

Coupling. Several points of an orbit can lie on its Wyckoff subspace (``z`` and ``-z`` for
``(0, 0, z)`` in I4/mmm, all four points of a general position in P2_1/c), so the data gives
several equally valid ``u_1``. Training pairs each prior sample with the nearest of them
(:func:`~crystalflow.symmetry.aligned_orbit_parameters`, ``SGCSPConfig.align_orbits``): the
endpoint is the same crystal (atoms relabelled inside the orbit), the conditional paths are shorter
(on MP-20 train the mean squared target velocity drops from 0.139 to 0.055) and less ambiguous, and
the prior is unchanged. Off by default: on MP-20 it did not raise the match rate (BENCHMARKS.md,
32,000 aligned vs 36,000 plain fine-tuning steps from the same weights: 56.7% vs 57.2% on 1,000
validation rows).

Self-conditioning. With a network built with ``self_condition`` (:class:`~crystalflow.models.SGNet`)
the flow feeds it the previous estimate of the clean crystal, ``x_t + (1 - t) v`` for the last
field ``v`` (:meth:`SGCSPFlow.clean_estimate`): in training, for a fraction
``SGCSPConfig.self_condition_prob`` of the batches, from a first gradient-free evaluation at the
same point; in sampling, from the previous solver evaluation (none at the first). A network
without it is sampled and trained exactly as before.

Lattice. The crystal-family constraints (tied lengths, fixed angles) are linear in the pooled
lattice chart with the open angle window (:func:`~crystalflow.symmetry.family_lattice_chart`), so
:func:`~crystalflow.symmetry.project_lattice` / ``project_lattice_tangent`` apply in the chart.
Prior: standard normal in the chart, projected; path: straight line in the chart; velocity:
projected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from crystalflow.checkpoint import Checkpoint
from crystalflow.crystals.batch import CrystalBatch
from crystalflow.flow_checkpoints import TaskFlow, rebuild_flow
from crystalflow.losses import LossOutput, cfm_loss
from crystalflow.manifolds import Euclidean, FlatTorus, LatticeChart
from crystalflow.models.conditions import SGConditions
from crystalflow.paths import GeodesicPath, WyckoffPath, sample_times
from crystalflow.solvers import integrate
from crystalflow.symmetry import (
    SymmetryBatch,
    WyckoffTemplate,
    aligned_orbit_parameters,
    collate_symmetry,
    crystal_mean,
    crystal_symmetry,
    lattice_constraint,
    orbit_first_atom,
    orbit_parameters,
    remove_drift,
    sample_orbit_parameters,
    symmetric_field,
    symmetrize_frac,
)

__all__ = ["SGCSPConfig", "SGCSPFlow", "sg_conditions", "orbit_parameters", "orbit_first_atom",
           "aligned_orbit_parameters", "crystal_mean", "remove_drift", "symmetric_field"]

State = dict[str, torch.Tensor]


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
    self_condition_prob: float = 0.5  # self-conditioned network: batches trained with an estimate
    t_late_fraction: float = 0.0  # training times: this fraction from U(t_late_min, 1), the rest U(0, 1)
    t_late_min: float = 0.8

    def to_dict(self) -> dict:
        return asdict(self)


def sg_conditions(atom_types: torch.Tensor, sym: SymmetryBatch) -> SGConditions:
    """Network conditions of a space-group conditioned batch (``atom_types [N]``)."""
    return SGConditions(atom_types=atom_types, batch=sym.batch, num_atoms=sym.num_atoms,
                        symmetry=sym)


class SGCSPFlow(TaskFlow):
    """Flow matching for CSP conditioned on a space group and a Wyckoff template.

    Args:
        model: ``model(x_t, t, SGConditions) -> {frac [N, 3], lattice [B, 6]}`` (e.g. SGNet).
        chart: a pooled lattice chart fitted on the training set
            (:func:`~crystalflow.symmetry.family_lattice_chart`).
        config: loss weights and sampling defaults.
    """

    task = "sgcsp"
    manifolds = {"frac": FlatTorus(3), "lattice": Euclidean(6)}

    def __init__(self, model: nn.Module, chart: LatticeChart, config: SGCSPConfig = SGCSPConfig()) -> None:
        self.model = model
        self.chart = chart
        self.config = config
        self.frac_path = WyckoffPath()  # drift-free: the training targets
        self.start_path = WyckoffPath(drift_free=False)  # ends on the given crystal: template starts
        self.lattice_path = GeodesicPath(self.manifolds["lattice"])
        config_of_model = getattr(model, "config", None)
        self.self_conditioned = bool(getattr(config_of_model, "self_condition", False))

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, device: str | torch.device = "cpu") -> "SGCSPFlow":
        """Rebuild the flow with the checkpoint's (EMA) weights, loaded strictly."""
        return rebuild_flow(ckpt, cls.task, device, lambda model: cls(
            model, LatticeChart.from_state_dict(ckpt.stats["lattice_chart"]), SGCSPConfig(**ckpt.task_config)))

    # -- constrained fields ---------------------------------------------------------------------

    def velocity(self, x: State, t: torch.Tensor, cond: SGConditions) -> State:
        """The model's field made symmetric: group-averaged fractions, family-projected lattice."""
        return symmetric_field(self.model(x, t, cond), cond.symmetry)

    def clean_estimate(self, x: State, v: State, t: torch.Tensor, sym: SymmetryBatch) -> State:
        """The self-conditioning input: the crystal the field ``v`` points to from ``x``,
        ``sc_frac = frac + (1 - t) v_frac [N, 3]`` and ``sc_lattice = lattice + (1 - t) v_lattice
        [B, 6]`` (``t [B]``), detached (fractions are read through periodic features: no wrap)."""
        rest = (1.0 - t).to(x["frac"].dtype)
        return {"sc_frac": (x["frac"] + rest.index_select(0, sym.batch)[:, None] * v["frac"]).detach(),
                "sc_lattice": (x["lattice"] + rest[:, None] * v["lattice"]).detach()}

    def sampling_field(self, cond: SGConditions):
        """``field(state, t) -> velocity``, the function the solver integrates (``t`` a scalar
        tensor, expanded to every crystal). A self-conditioned network reads the estimate of the
        previous evaluation (none at the first); the estimate lives in this closure only."""
        b = cond.symmetry.space_group.shape[0]
        estimate: State = {}

        def field(x: State, t: torch.Tensor) -> State:
            tb = t.expand(b)
            v = self.velocity({**x, **estimate}, tb, cond)
            if self.self_conditioned:
                estimate.update(self.clean_estimate(x, v, tb, cond.symmetry))
            return v

        return field

    def project_lattice_z(self, z: torch.Tensor, sym: SymmetryBatch) -> torch.Tensor:
        """Project chart coordinates ``[B, 6]`` onto the crystal-family constraints."""
        return lattice_constraint(sym.space_group, z.device).project(z, self.chart.angle_to_z)

    def project(self, x: State, sym: SymmetryBatch) -> State:
        """Atoms ``frac [N, 3]`` back onto their orbits, lattice ``[B, 6]`` onto its family."""
        return {"frac": symmetrize_frac(x["frac"], sym), "lattice": self.project_lattice_z(x["lattice"], sym)}

    def prior(self, sym: SymmetryBatch, dtype: torch.dtype = torch.float32,
              generator: torch.Generator | None = None) -> State:
        """``x0``: orbit parameters ``u [M, 3]`` uniform, atoms ``frac [N, 3]``, lattice ``[B, 6]``."""
        u, frac = sample_orbit_parameters(sym, generator, dtype)
        lat = torch.randn(sym.space_group.shape[0], 6, generator=generator, dtype=torch.float64,
                          device=sym.space_group.device)
        return {"u": u, "frac": frac, "lattice": self.project_lattice_z(lat, sym).to(dtype)}

    # -- training -------------------------------------------------------------------------------

    def path(self, x0: State, batch: CrystalBatch, t: torch.Tensor) -> tuple[State, State]:
        """Points ``x_t`` and target velocities of the conditional path (per-crystal times ``t [B]``)."""
        sym = batch.symmetry
        dtype = batch.frac.dtype
        if self.config.align_orbits:
            u1 = aligned_orbit_parameters(batch.frac.double(), x0["u"], sym)
        else:
            u1 = orbit_parameters(batch.frac.double().index_select(0, orbit_first_atom(sym)), sym)
        frac = self.frac_path.sample(x0["u"], u1, t, sym)
        lat = self.lattice_path.sample(x0["lattice"].double(), self.chart.to_z(batch.lattice.double()), t.double())
        x_t = {"frac": frac.x_t.to(dtype), "lattice": lat.x_t.to(dtype)}
        return x_t, {"frac": frac.dx_t.to(dtype), "lattice": lat.dx_t.to(dtype)}

    def loss(self, batch: CrystalBatch, generator: torch.Generator | None = None) -> LossOutput:
        """CFM loss: squared error of the symmetrised field against the path's velocity (a
        self-conditioned network sees, in a fraction of batches, its own gradient-free estimate
        at the same point)."""
        sym = batch.symmetry
        if sym is None:
            raise ValueError("the space-group conditioned flow needs batches with a symmetry field")
        x0 = self.prior(sym, dtype=batch.frac.dtype, generator=generator)
        t = sample_times(batch.num_crystals, late_fraction=self.config.t_late_fraction,
                         late_min=self.config.t_late_min, dtype=batch.frac.dtype, generator=generator,
                         device=batch.device)
        x_t, target = self.path(x0, batch, t)
        cond = sg_conditions(batch.atom_types, sym)
        inputs = x_t
        if self.self_conditioned and float(torch.rand((), generator=generator, device=batch.device)) \
                < self.config.self_condition_prob:
            with torch.no_grad():
                inputs = {**x_t, **self.clean_estimate(x_t, self.velocity(x_t, t, cond), t, sym)}
        pred = self.velocity(inputs, t, cond)
        weights = {"frac": self.config.frac_weight, "lattice": self.config.lattice_weight}
        return cfm_loss(pred, target, x_t, self.manifolds, weights)

    # -- sampling -------------------------------------------------------------------------------

    def path_point(self, x0: State, start: State, sym: SymmetryBatch, t: float,
                   dtype: torch.dtype = torch.float32) -> State:
        """The conditional path's point at time ``t`` between the prior sample ``x0`` and a known
        crystal ``start`` (``representatives [M, 3]``, ``lattice [B, 6]`` parameters): orbit
        parameters ``u0 + t wrap(u1 - u0)`` (no drift removed: at ``t = 1`` the start itself),
        chart ``z0 + t (z1 - z0)``, both projected."""
        u1 = orbit_parameters(start["representatives"].to(sym.orbit_basis), sym)
        frac = self.start_path.sample(x0["u"], u1, t, sym).x_t
        z1 = self.chart.to_z(start["lattice"].to(torch.float64).to(x0["lattice"].device))
        z0 = x0["lattice"].double()
        z = self.project_lattice_z(z0 + t * (z1 - z0), sym)
        return {"frac": frac.to(dtype), "lattice": z.to(dtype)}

    def to_batch(self, x: State, atom_types: torch.Tensor, sym: SymmetryBatch,
                 dtype: torch.dtype = torch.float32) -> CrystalBatch:
        """The final state (``frac [N, 3]``, chart ``lattice [B, 6]``) as conventional cells."""
        z = self.project_lattice_z(x["lattice"].double(), sym)
        params = lattice_constraint(sym.space_group, z.device).project(self.chart.to_params(z))
        return CrystalBatch(frac=x["frac"], lattice=params.to(dtype), atom_types=atom_types,
                            batch=sym.batch, num_atoms=sym.num_atoms, symmetry=sym)

    @torch.no_grad()
    def sample(
        self, templates: Sequence[WyckoffTemplate], *, steps: int | None = None,
        method: str | None = None, symmetrize: bool | None = None,
        anti_annealing: dict[str, float] | None = None, generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
        callback=None, start: State | None = None, start_time: float = 0.0,
    ) -> CrystalBatch:
        """Integrate the symmetrised flow from the symmetric prior.

        Args:
            templates: one Wyckoff template per crystal.
            steps / method: fixed-step solver (``euler``, ``midpoint`` or ``rk4``); defaults from
                the config.
            symmetrize: re-project positions and lattice onto the symmetric set after every step.
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
        symmetrize = cfg.symmetrize if symmetrize is None else symmetrize
        if anti_annealing is None:
            anti_annealing = {"frac": cfg.anti_annealing_frac, "lattice": cfg.anti_annealing_lattice}
        cond = sg_conditions(atom_types, sym)
        x0 = self.prior(sym, dtype=dtype, generator=generator)
        x = {"frac": x0["frac"], "lattice": x0["lattice"]}
        t_start = 0.0
        if start is not None:
            if not 0.0 <= start_time < 1.0:
                raise ValueError(f"start_time must be in [0, 1), got {start_time}")
            x = self.path_point(x0, start, sym, start_time, dtype)
            t_start = start_time
        out = integrate(self.sampling_field(cond), x, self.manifolds,
                        max(1, math.ceil(steps * (1.0 - t_start) - 1e-9)), method or cfg.method,
                        t0=t_start, anti_annealing=anti_annealing, callback=callback,
                        project=(lambda s: self.project(s, sym)) if symmetrize else None)
        return self.to_batch(out, atom_types, sym, dtype)
