"""Crystal structure prediction (types known) by Riemannian flow matching, FlowMM-style.

Fields: ``frac`` on the flat torus (uniform prior) and ``lattice`` in the standardised lattice
chart (standard normal prior). :class:`CSPFlow` ties together the network, the paths, the loss and
the solver; the network only ever sees ``(x_t, t, conditions)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from crystalflow.checkpoint import Checkpoint
from crystalflow.crystals.batch import CrystalBatch
from crystalflow.flow_checkpoints import TaskFlow, rebuild_flow
from crystalflow.losses import LossOutput, cfm_loss
from crystalflow.manifolds import Euclidean, FlatTorus, LatticeChart
from crystalflow.models.conditions import Conditions
from crystalflow.paths import GeodesicPath, ProductPath
from crystalflow.solvers import integrate


@dataclass(frozen=True)
class CSPConfig:
    """Loss weights and default sampling settings of the CSP flow."""

    frac_weight: float = 1.0
    lattice_weight: float = 0.1
    steps: int = 100
    method: str = "euler"
    anti_annealing_frac: float = 0.0
    anti_annealing_lattice: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def conditions_of(batch: CrystalBatch) -> Conditions:
    """The conditioning of a CSP batch: its atom types and layout."""
    return Conditions(atom_types=batch.atom_types, batch=batch.batch, num_atoms=batch.num_atoms)


class CSPFlow(TaskFlow):
    """Flow matching for CSP over ``frac`` (torus) and ``lattice`` (chart) fields.

    Args:
        model: a vector field ``model(x_t, t, cond) -> {frac [N,3], lattice [B,6]}``.
        chart: the lattice chart fitted on the training set.
        config: loss weights and sampling defaults.
    """

    task = "csp"
    manifolds = {"frac": FlatTorus(3), "lattice": Euclidean(6)}

    def __init__(self, model: nn.Module, chart: LatticeChart, config: CSPConfig = CSPConfig()) -> None:
        self.model = model
        self.chart = chart
        self.config = config
        self.path = ProductPath({k: GeodesicPath(m) for k, m in self.manifolds.items()})
        if hasattr(model, "use_chart"):  # networks that rebuild the Cartesian lattice need the chart
            model.use_chart(chart)

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, device: str | torch.device = "cpu") -> "CSPFlow":
        """Rebuild the flow with the checkpoint's (EMA) weights, loaded strictly."""
        return rebuild_flow(ckpt, cls.task, device, lambda model: cls(
            model, LatticeChart.from_state_dict(ckpt.stats["lattice_chart"]), CSPConfig(**ckpt.task_config)))

    def prior(self, cond: Conditions, dtype: torch.dtype = torch.float32,
              generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Sample ``x0``: uniform fractional coordinates ``[N, 3]``, standard normal chart ``[B, 6]``."""
        n, b = cond.atom_types.shape[0], cond.num_atoms.shape[0]
        dev = cond.atom_types.device
        frac = torch.rand(n, 3, generator=generator, dtype=dtype, device=dev)
        lat = torch.randn(b, 6, generator=generator, dtype=dtype, device=dev)
        return {"frac": frac, "lattice": lat}

    def targets(self, batch: CrystalBatch) -> dict[str, torch.Tensor]:
        """``x1``: the data in the flow's coordinates."""
        return {"frac": batch.frac, "lattice": self.chart.to_z(batch.lattice)}

    def loss(self, batch: CrystalBatch, generator: torch.Generator | None = None) -> LossOutput:
        """CFM loss on one batch (t ~ U(0, 1) per crystal, shared by its atoms)."""
        cond = conditions_of(batch)
        x1 = self.targets(batch)
        x0 = self.prior(cond, dtype=batch.frac.dtype, generator=generator)
        t = torch.rand(batch.num_crystals, generator=generator, dtype=batch.frac.dtype,
                       device=batch.device)
        ps = self.path.sample(x0, x1, {"frac": t[batch.batch], "lattice": t})
        x_t = {k: p.x_t for k, p in ps.items()}
        pred = self.model(x_t, t, cond)
        return cfm_loss(
            pred, {k: p.dx_t for k, p in ps.items()}, x_t, self.manifolds,
            {"frac": self.config.frac_weight, "lattice": self.config.lattice_weight},
        )

    @torch.no_grad()
    def sample(
        self, cond: Conditions, *, steps: int | None = None, method: str | None = None,
        anti_annealing: dict[str, float] | None = None, generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> CrystalBatch:
        """Integrate the learned flow from the prior; returns crystals (lattice as parameters)."""
        cfg = self.config
        if anti_annealing is None:
            anti_annealing = {"frac": cfg.anti_annealing_frac, "lattice": cfg.anti_annealing_lattice}
        x0 = self.prior(cond, dtype=dtype, generator=generator)

        def velocity(x: dict[str, torch.Tensor], t: torch.Tensor) -> dict[str, torch.Tensor]:
            return self.model(x, t.expand(cond.num_atoms.shape[0]), cond)

        x1 = integrate(velocity, x0, self.manifolds, steps or cfg.steps, method or cfg.method,
                       anti_annealing=anti_annealing, time_dtype=dtype)
        return CrystalBatch(
            frac=x1["frac"], lattice=self.chart.to_params(x1["lattice"].double()).to(dtype),
            atom_types=cond.atom_types, batch=cond.batch, num_atoms=cond.num_atoms,
        )
