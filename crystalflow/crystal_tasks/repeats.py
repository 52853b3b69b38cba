"""Repeat avoidance for steered sampling: a memory of the crystals a sampler has kept, and picks
that charge a penalty for matching one of them.

In a small chemical system the lowest-reward particle of a group is often the same known crystal
again. With a penalty P > 0 a particle that matches (pymatgen StructureMatcher, the uniqueness test
of :mod:`crystalflow.metrics.novelty`) a kept crystal costs ``reward + P``, so the group's next-best
distinct particle can win (:func:`pick_avoiding_repeats`, which also remembers each pick), and a
two-stage sampler spends its expensive reward on distinct candidates (:func:`top_avoiding_repeats`).
Used by :class:`crystalflow.crystal_tasks.steering.SteeredSampler` (``SteeringConfig.repeat_penalty``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["RepeatMemory", "pick_avoiding_repeats", "top_avoiding_repeats"]


@dataclass
class RepeatMemory:
    """The crystals a sampler has kept, by reduced formula, to test new ones against.

    Attributes:
        kept: reduced formula -> the kept structures of that formula.
        comparisons: StructureMatcher fits made so far (the cost of the memory).
    """

    kept: dict[str, list] = field(default_factory=dict)
    comparisons: int = 0

    def matches(self, structure) -> bool:
        """Does ``structure`` match a kept crystal
        (:func:`crystalflow.metrics.novelty.structures_match`; only equal reduced formulas can)?"""
        from crystalflow.metrics.novelty import structures_match

        for other in self.kept.get(structure.composition.reduced_formula, ()):
            self.comparisons += 1
            if structures_match(structure, other):
                return True
        return False

    def add(self, structure) -> None:
        """Remember ``structure`` as kept."""
        self.kept.setdefault(structure.composition.reduced_formula, []).append(structure)

    def __len__(self) -> int:
        return sum(len(v) for v in self.kept.values())


def _penalised_top(rewards: torch.Tensor, repeats, penalty: float, top: int) -> list[int]:
    """``[K]`` rewards of one group -> the ``top`` particles of lowest ``reward + penalty *
    repeats(i)``, lowest first (``nan``: worst; ties in reward order). ``repeats(i)`` is asked
    lazily, in reward order, only while particle ``i``'s bare reward can still enter the top."""
    r = torch.where(torch.isnan(rewards), torch.full_like(rewards, math.inf), rewards.double())
    order = r.argsort(stable=True).tolist()
    if penalty <= 0:
        return order[:top]
    costed: list[tuple[float, int, int]] = []  # (cost, rank in reward order, particle)
    for rank, i in enumerate(order):
        value = float(r[i])
        if len(costed) >= top and not value < costed[top - 1][0]:
            break
        cost = value + penalty if math.isfinite(value) and repeats(i) else value
        costed = sorted([*costed, (cost, rank, i)])
    return [i for _, _, i in costed[:top]]


def _tops_avoiding_repeats(rewards: torch.Tensor, structures: Sequence, particles: int, top: int, penalty: float,
                           memory: RepeatMemory, remember: bool) -> torch.Tensor:
    """Group by group, :func:`_penalised_top` against ``memory``; with ``remember``, each group's
    first pick joins the memory before the next group is settled."""
    if len(structures) != rewards.shape[0]:
        raise ValueError(f"{len(structures)} structures for {rewards.shape[0]} rewards")
    r = rewards.reshape(-1, particles)
    out: list[int] = []
    for g in range(r.shape[0]):
        base = g * particles
        picked = [base + i for i in _penalised_top(r[g], lambda i: memory.matches(structures[base + i]),
                                                   penalty, top)]
        if remember:
            memory.add(structures[picked[0]])
        out += picked
    return torch.tensor(out, dtype=torch.long)


def top_avoiding_repeats(rewards: torch.Tensor, structures: Sequence, particles: int, top: int,
                         penalty: float, memory: RepeatMemory) -> torch.Tensor:
    """:func:`top_in_groups` by ``reward + penalty * [the particle matches a crystal in memory]``
    (``memory`` is read, not updated).

    Args:
        rewards: ``[B * K]`` (``nan``: worst).
        structures: the ``B * K`` particles' structures.
        particles: K. top: M <= K.
        penalty: >= 0, in reward units (0: exactly :func:`top_in_groups`, no matching).
        memory: the crystals kept so far.

    Returns:
        ``[B * M]`` long global indices, group by group, lowest cost first.
    """
    return _tops_avoiding_repeats(rewards, structures, particles, top, penalty, memory, remember=False)


def pick_avoiding_repeats(rewards: torch.Tensor, structures: Sequence, particles: int, penalty: float,
                          memory: RepeatMemory) -> torch.Tensor:
    """Each group's particle of lowest ``reward + penalty * [it matches a kept crystal]``, groups
    settled in order, each pick added to ``memory`` before the next group (so a call's later groups
    avoid its earlier picks too).

    Args:
        rewards: ``[B * K]`` (``nan``: worst).
        structures: the ``B * K`` particles' structures.
        particles: K.
        penalty: >= 0, in reward units; 0 gives :func:`best_in_groups` (still remembering the picks).
        memory: the crystals kept so far; updated in place.

    Returns:
        ``[B]`` long global indices. Particles are tested in reward order and only while their bare
        reward can still win, so a group whose best particle is new costs one test per kept crystal
        of its formula.
    """
    return _tops_avoiding_repeats(rewards, structures, particles, 1, penalty, memory, remember=True)
