"""Rewards for steered generation (:mod:`crystalflow.crystal_tasks.steering`): structures -> costs, lower is better.

A reward is any callable ``reward(structures) -> sequence of floats`` (one per structure, lower is
better; ``inf`` / ``nan`` count as the worst). The steering methods weight particles by
``exp(-reward / temperature)`` and keep the lowest reward, so the reward's unit sets the scale of
the temperature (eV/atom for the energies here).

Bundled rewards:

* :class:`HullEnergyReward` (the default): CHGNet static energy per atom of the structure *as
  given* (no relaxation: the rewards score unrelaxed endpoint predictions inside the flow) minus
  the bundled CHGNet hull (:mod:`crystalflow.metrics.hull`), i.e. an unrelaxed E_hull in eV/atom;
  with ``relax_steps > 0``, the energy after that many CHGNet FIRE steps (positions and cell) instead,
  a reward closer to the relaxed E_hull that stability is judged by, at up to ``relax_steps + 1``
  CHGNet passes per structure;
* :class:`FormationEnergyReward`: ``|E_form - target|`` with the CHGNet formation energy per atom
  against the hull's elemental references;
* :class:`DensityReward` / :class:`VolumeReward`: ``|density - target|`` (g/cm^3) or
  ``|volume per atom - target|`` (A^3), no CHGNet.

Every bundled reward adds :data:`CLASH_PENALTY` to structures with two atoms closer than
``min_distance`` (0.5 A, the structural validity cut-off): an energy model is not trustworthy
there, and such structures are invalid anyway. Structures a reward cannot score (CHGNet fails,
an element outside the hull) get :data:`FAILURE_REWARD`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pymatgen.core import Structure

from crystalflow.metrics.validity import min_interatomic_distance

__all__ = ["CLASH_PENALTY", "FAILURE_REWARD", "DensityReward", "FormationEnergyReward", "HullEnergyReward",
           "Reward", "TargetReward", "VolumeReward", "min_distance"]

#: a reward: structures -> one cost per structure (lower is better)
Reward = Callable[[Sequence[Structure]], Sequence[float]]
#: added to the reward of a structure with atoms closer than ``min_distance``
CLASH_PENALTY = 5.0
#: the reward of a structure that could not be scored
FAILURE_REWARD = 10.0


def min_distance(structure: Structure) -> float:
    """Shortest interatomic distance (A): between two sites
    (:func:`crystalflow.metrics.validity.min_interatomic_distance`) or between a site and its own
    periodic image (the shortest lattice vector length); ``inf`` for an empty structure."""
    if not len(structure):
        return math.inf
    return float(min(min_interatomic_distance(structure), *structure.lattice.abc))


def _clash(structures: Sequence[Structure], cutoff: float) -> list[float]:
    return [CLASH_PENALTY if min_distance(s) < cutoff else 0.0 for s in structures]


def _finite_or(value: float | None, default: float = FAILURE_REWARD) -> float:
    return float(value) if value is not None and math.isfinite(value) else default


@dataclass
class HullEnergyReward:
    """CHGNet energy above the bundled hull (eV/atom), the default steering reward: of the structure
    as given, or after a short relaxation (``relax_steps``).

    Attributes:
        hull: the reference hull (default: :func:`crystalflow.metrics.hull.load_reference_hull`).
        min_distance: clash cut-off (A).
        batch_size: CHGNet batch size.
        relax_steps: CHGNet FIRE steps (positions and cell, :func:`crystalflow.metrics.energy.relax_many`)
            before the energy is read; 0 (the default): the static energy of the structure as given.
        calls: structures scored so far (the reward calls).
        chgnet_passes: CHGNet forward passes so far (``calls`` when static; with relaxation, the
            steps each structure took plus one: the compute actually spent).
    """

    hull: object | None = None
    min_distance: float = 0.5
    batch_size: int = 16
    relax_steps: int = 0
    calls: int = field(default=0, init=False)
    chgnet_passes: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.relax_steps < 0:
            raise ValueError(f"relax_steps must be >= 0, got {self.relax_steps}")

    def _hull(self):
        if self.hull is None:
            from crystalflow.metrics.hull import load_reference_hull

            self.hull = load_reference_hull()
        return self.hull

    def energies(self, structures: Sequence[Structure]) -> list[float | None]:
        """CHGNet energies per atom, static or after ``relax_steps`` (``None`` on failure); counts
        the calls and the CHGNet passes."""
        self.calls += len(structures)
        if self.relax_steps <= 0:
            from crystalflow.metrics.energy import static_energies

            self.chgnet_passes += len(structures)
            return static_energies(list(structures), batch_size=self.batch_size, progress=False)
        from crystalflow.metrics.energy import relax_many

        done = relax_many(list(structures), steps=self.relax_steps, batch_size=self.batch_size, progress=False)
        self.chgnet_passes += sum(r.steps + 1 for r in done)
        return [r.energy_per_atom if math.isfinite(r.energy_per_atom) else None for r in done]

    def score(self, structure: Structure, energy: float | None) -> float:
        """Cost of one structure of CHGNet energy ``energy`` (eV/atom)."""
        if energy is None:
            return FAILURE_REWARD
        try:
            return _finite_or(self._hull().e_above_hull(structure.composition, energy).e_above_hull)
        except Exception:  # degenerate hull of this chemical system
            return FAILURE_REWARD

    def __call__(self, structures: Sequence[Structure]) -> list[float]:
        energies = self.energies(structures)
        clash = _clash(structures, self.min_distance)
        return [self.score(s, e) + c for s, e, c in zip(structures, energies, clash)]


@dataclass
class FormationEnergyReward(HullEnergyReward):
    """``|E_form - target|`` (eV/atom), E_form the CHGNet formation energy per atom (unrelaxed, or
    after ``relax_steps``) against the hull's elemental references (a property target through the
    reward interface).

    Attributes:
        target: the wanted formation energy (eV/atom), e.g. ``-2.0``.
    """

    target: float = 0.0

    def score(self, structure: Structure, energy: float | None) -> float:
        if energy is None:
            return FAILURE_REWARD
        from pymatgen.analysis.phase_diagram import PDEntry

        comp = structure.composition
        chemsys = frozenset(el.symbol for el in comp.elements)
        hull = self._hull()
        if not chemsys <= hull.elements:
            return FAILURE_REWARD
        try:
            e_form = hull.phase_diagram(chemsys).get_form_energy_per_atom(PDEntry(comp, energy * comp.num_atoms))
        except Exception:
            return FAILURE_REWARD
        return _finite_or(abs(float(e_form) - self.target))


@dataclass(frozen=True)
class TargetReward:
    """``|value(structure) - target|`` plus the clash penalty (no energy model; a non-finite value,
    e.g. of a non-finite cell, costs :data:`FAILURE_REWARD`); subclasses say what ``value`` is."""

    target: float
    min_distance: float = 0.5

    def value(self, structure: Structure) -> float:
        raise NotImplementedError

    def __call__(self, structures: Sequence[Structure]) -> list[float]:
        clash = _clash(structures, self.min_distance)
        return [_finite_or(abs(self.value(s) - self.target)) + c for s, c in zip(structures, clash)]


@dataclass(frozen=True)
class DensityReward(TargetReward):
    """``|density - target|`` in g/cm^3 (no energy model)."""

    def value(self, structure: Structure) -> float:
        return float(structure.density)


@dataclass(frozen=True)
class VolumeReward(TargetReward):
    """``|volume per atom - target|`` in A^3 (no energy model)."""

    def value(self, structure: Structure) -> float:
        return float(structure.volume) / len(structure)
