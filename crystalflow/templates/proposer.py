"""Template proposer: known crystals of the same anonymous formula, elements substituted.

For a target composition (atom counts of the cell), every library crystal with the same *reduced
anonymous formula* (sorted reduced counts: SrTiO3 and CaTiO3 are both ``(1, 1, 3)``) is a
candidate prototype. Its elements are replaced consistently by the target's: elements of equal
reduced count can be assigned either way, so every such bijection is tried. Each (crystal,
assignment) gets a chemical distance, the count-weighted mean of ``|M(target) - M(source)|`` over
the substituted elements, where ``M`` is Pettifor's Mendeleev number (pymatgen's
``Element.mendeleev_no``), the chemical scale on which similar elements substitute for each other
(Pettifor 1984; the ranking CSPML-style template methods use). Distance 0 means the library holds
the same chemistry.

Proposals are de-duplicated by substituted *prototype label* (space group plus the sorted
(Wyckoff letter, element) pairs): two library crystals that give the same label give the same
symmetric arrangement, so only the closer one is kept, and ``support`` counts how many library
crystals share that label (how common the prototype is for this chemistry). Ranked by
``(cell size differs from the target's, distance, -support)``: templates at the target's number of
formula units first.

Each proposal also carries a *vote*: the similarity-weighted number of library crystals that give
the same substituted prototype at the target's size. Ranking candidates by vote and CHGNet energy
together beats either alone (:mod:`crystalflow.crystal_tasks.pipeline`).
"""

from __future__ import annotations

import functools
import math
import itertools
import warnings
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Element, Lattice, Structure

from crystalflow.symmetry import WyckoffTemplate, build_symmetrized
from crystalflow.templates.library import LibraryEntry, TemplateLibrary, anonymous_key, centering

__all__ = ["Proposal", "propose", "template_label", "mendeleev_numbers", "MAX_ASSIGNMENTS", "VOTE_SCALE"]

#: most element assignments tried per library crystal (ties in reduced counts)
MAX_ASSIGNMENTS = 24
#: Mendeleev-number distance at which a library crystal's vote falls by a factor e (chosen on
#: MP-20 validation rows held out of the library: 1 beat 0.5, 2, 4 and 8)
VOTE_SCALE = 1.0


@functools.lru_cache(maxsize=1)
def mendeleev_numbers() -> np.ndarray:
    """``[119]`` Pettifor Mendeleev number by atomic number (NaN where pymatgen has none)."""
    out = np.full(119, np.nan)
    for z in range(1, 119):
        try:
            with warnings.catch_warnings():  # pymatgen warns for the superheavy elements
                warnings.simplefilter("ignore")
                m = Element.from_Z(z).mendeleev_no
        except Exception:
            m = None
        if m is not None:
            out[z] = float(m)
    return out


@dataclass(frozen=True)
class Proposal:
    """A library crystal with the target's elements substituted.

    Attributes:
        entry: the library crystal.
        mapping: ``{source Z: target Z}``.
        template: the substituted Wyckoff template (target elements on the orbits).
        distance: count-weighted mean Mendeleev-number distance of the substitution.
        support: library crystals sharing the substituted prototype label.
        same_size: the template's primitive cell has the target's number of formula units.
        vote: similarity-weighted count of library crystals with this substituted prototype at
            the target's size, ``sum exp(-distance / VOTE_SCALE)`` (nearest-neighbour voting).
    """

    entry: LibraryEntry
    mapping: dict[int, int]
    template: WyckoffTemplate
    distance: float
    support: int
    same_size: bool
    vote: float = 0.0

    @property
    def label(self) -> str:
        """Human-readable prototype of the substituted template (:func:`template_label`)."""
        return template_label(self.template)

    def lattice(self, library: TemplateLibrary) -> np.ndarray:
        """``[6]`` the source lattice, lengths rescaled so the volume per atom is the source's
        times the ratio of the fitted element volumes (target / source)."""
        ratio = (library.volume_per_atom(self.template.composition)
                 / library.volume_per_atom(self.entry.template.composition))
        lattice = self.entry.lattice.copy()
        lattice[:3] *= ratio ** (1.0 / 3.0)
        return lattice

    def structure(self, library: TemplateLibrary) -> Structure:
        """The substituted conventional cell at the rescaled :meth:`lattice`."""
        return build_symmetrized(self.template, self.lattice(library),
                                 self.entry.representatives).to_structure()


def template_label(template: WyckoffTemplate) -> str:
    """``"221 Sr:1a Ti:1b O:3c"``: space group, then element, multiplicity and letter per orbit."""
    parts = " ".join(f"{Element.from_Z(z).symbol}:{_mult(template.space_group, l)}{l}"
                     for l, z in zip(template.letters, template.atom_types))
    return f"{template.space_group} {parts}"


@functools.lru_cache(maxsize=None)
def _mult(space_group: int, letter: str) -> int:
    from crystalflow.symmetry import wyckoff_position

    return wyckoff_position(space_group, letter).multiplicity


def _slots(counts: dict[int, int]) -> tuple[list[int], list[int]]:
    """Elements and reduced counts sorted by count (then Z)."""
    g = np.gcd.reduce(list(counts.values()))
    items = sorted(((n // g, z) for z, n in counts.items()))
    return [z for _, z in items], [n for n, _ in items]


def _assignments(counts: list[int], limit: int = MAX_ASSIGNMENTS) -> list[tuple[int, ...]]:
    """Permutations of slot indices that only exchange slots of equal count."""
    groups = [list(g) for _, g in itertools.groupby(range(len(counts)), key=lambda i: counts[i])]
    perms = []
    for combo in itertools.product(*(itertools.permutations(g) for g in groups)):
        perms.append(tuple(i for part in combo for i in part))
        if len(perms) >= limit:
            break
    return perms


def propose(library: TemplateLibrary, counts: dict[int, int], *, top: int = 20,
            exact_size: bool = False) -> list[Proposal]:
    """Ranked substituted templates for a composition.

    Args:
        library: the template library.
        counts: ``{Z: atoms}`` of the target cell (its size sets the preferred formula units).
        top: most proposals returned.
        exact_size: only templates at the target's number of formula units.

    Returns:
        Up to ``top`` proposals, best first (see the module docstring); empty when the library
        has no crystal of this anonymous formula.
    """
    key, units = anonymous_key(counts)
    rows = library.by_formula.get(key, [])
    if not rows:
        return []
    tgt_z, tgt_n = _slots(counts)
    weights = np.asarray(tgt_n, dtype=np.float64) / sum(tgt_n)
    mnum = mendeleev_numbers()
    perms = _assignments(tgt_n)
    fallback = float(np.nanmax(mnum))
    label_rows: dict[tuple, set[int]] = defaultdict(set)
    votes: dict[tuple, float] = defaultdict(float)
    best: dict[tuple, tuple] = {}
    for i in rows:
        t = library.template(i)
        src_z, _ = _slots(t.composition)
        size_miss = anonymous_key(t.composition)[1] // centering(t.space_group) != units
        if exact_size and size_miss:
            continue
        src_m = mnum[src_z]
        for p in perms:
            z_to = [tgt_z[j] for j in p]  # source slot k takes target element z_to[k]
            diff = np.abs(src_m - mnum[z_to])
            diff = np.where(np.isnan(diff), fallback, diff)
            dist = float((weights[list(p)] * diff).sum())
            mapping = dict(zip(src_z, z_to))
            sub = tuple(mapping[z] for z in t.atom_types)
            label = (t.space_group, tuple(sorted(zip(t.letters, sub))))
            label_rows[label].add(i)
            if not size_miss:
                votes[label] += math.exp(-dist / VOTE_SCALE)
            if label not in best or (size_miss, dist) < best[label][:2]:
                best[label] = (size_miss, dist, i, mapping, sub)
    ranked = sorted(best.items(), key=lambda kv: (kv[1][0], kv[1][1], -len(label_rows[kv[0]]), kv[1][2]))
    out = []
    for label, (size_miss, dist, i, mapping, sub) in ranked[:top]:
        entry = library.entry(i)
        template = WyckoffTemplate(entry.template.space_group, entry.template.letters, sub)
        out.append(Proposal(entry=entry, mapping=mapping, template=template, distance=dist,
                            support=len(label_rows[label]), same_size=not size_miss,
                            vote=votes[label]))
    return out
