"""A composition's candidate structures and their order (the pipeline's ranking and distinct outputs).

:class:`Candidate` carries a structure with where it came from (source, template, proposal
rank, library vote and support) and its CHGNet energies; :func:`rank_candidates` orders a
composition's candidates by ``energy_weight * E - log(vote + VOTE_FLOOR)`` (chosen on MP-20
validation rows, BENCHMARKS.md) or by the proposer's order; :func:`distinct_best` picks the
best distinct crystals for ``--num-samples``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from pymatgen.core import Structure

from crystalflow.checks import StructureCheck

__all__ = ["SOURCES", "VOTE_FLOOR", "Candidate", "rank_candidates", "distinct_best"]

#: vote of a candidate without a library prototype (p1, enumerated): log(1e-3) = -6.9 nats
VOTE_FLOOR = 1e-3
#: candidate sources, in the order summary.csv names them
SOURCES = ("template", "template-flow", "flow", "enumerated", "p1")


@dataclass
class Candidate:
    """One candidate structure of a composition.

    Attributes:
        structure: the crystal (primitive cell).
        source: one of :data:`SOURCES`.
        template: prototype label (``"<space group> El:<mult><letter> ..."``), '' for ``p1``.
        template_id: material id of the library crystal it came from ('' if none).
        distance: the proposal's chemical distance (``None`` without a template).
        proposal_rank: rank of its proposal (0 = best; large for ``p1`` / ``enumerated``).
        vote: its prototype's library vote (0 without a template).
        support: library crystals sharing its prototype (0 without a template).
        same_size: its template has the target's number of formula units.
        energy: CHGNet energy per atom (eV/atom) as built, ``None`` if not computed or failed.
        relaxed_energy: after CHGNet relaxation, ``None`` if not relaxed.
        check: the output check, set on the returned structures.
    """

    structure: Structure
    source: str
    template: str = ""
    template_id: str = ""
    distance: float | None = None
    proposal_rank: int = 10**6
    vote: float = 0.0
    support: int = 0
    same_size: bool = False
    energy: float | None = None
    relaxed_energy: float | None = None
    min_distance: float = field(default=float("nan"))
    check: StructureCheck | None = None

    @property
    def best_energy(self) -> float:
        """Relaxed energy when available, else static; ``inf`` when unknown."""
        e = self.relaxed_energy if self.relaxed_energy is not None else self.energy
        return math.inf if e is None or not math.isfinite(e) else e

    def score(self, energy_weight: float) -> float:
        """Ranking score, lower is better: ``energy_weight * E - log(vote + VOTE_FLOOR)``."""
        return energy_weight * self.best_energy - math.log(self.vote + VOTE_FLOOR)


def rank_candidates(cands: Sequence[Candidate], *, rank: str = "energy",
                    energy_weight: float = 10.0) -> list[Candidate]:
    """Candidates best first: valid (atoms >= 0.5 A apart) before invalid, then by
    :meth:`Candidate.score` (``rank="energy"``) or by the proposer's order
    (``rank="similarity"``)."""
    def key(c: Candidate):
        invalid = not c.min_distance >= 0.5
        if rank == "energy":
            return (invalid, c.score(energy_weight), c.proposal_rank)
        return (invalid, c.proposal_rank, SOURCES.index(c.source))
    return sorted(cands, key=key)


def distinct_best(ranked: Sequence[Candidate], k: int) -> list[Candidate]:
    """The ``k`` best candidates, different crystals first: a candidate that a tight
    ``StructureMatcher`` (ltol 0.05, stol 0.05, angle 1, volumes scaled) matches to a better one
    is passed over, so two templates related by an origin shift (Pm-3m perovskites written on
    1a/1b/3c and on 1b/1a/3d) do not fill two of the ``--num-samples`` places while a distorted
    variant waits. When fewer than ``k`` distinct crystals exist, the passed-over ones fill up,
    then invalid candidates (atoms closer than 0.5 A): a valid repeat beats an invalid crystal."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    if k <= 1:
        return list(ranked[:k])
    matcher = StructureMatcher(ltol=0.05, stol=0.05, angle_tol=1.0)
    out: list[Candidate] = []
    repeats: list[Candidate] = []
    invalid: list[Candidate] = []
    for c in ranked:
        if len(out) == k:
            break
        if c.min_distance < 0.5:  # known to be invalid (NaN: not measured, kept in the race)
            invalid.append(c)
            continue
        try:
            seen = any(matcher.fit(c.structure, o.structure) for o in out)
        except Exception:  # a degenerate cell: keep it, the output check flags it
            seen = False
        (repeats if seen else out).append(c)
    return (out + repeats + invalid)[:k]
