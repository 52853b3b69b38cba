"""Enumerate the Wyckoff templates of a space group compatible with a composition."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from pymatgen.core import Composition, Element

from crystalflow.errors import InputError
from crystalflow.symmetry.groups import get_space_group
from crystalflow.symmetry.template import WyckoffTemplate, parse_composition
from crystalflow.symmetry.wyckoff import WyckoffPosition, wyckoff_positions

__all__ = ["enumerate_templates"]

#: Upper bound on search-tree nodes, so that a hopeless request fails instead of hanging.
MAX_SEARCH_NODES = 200_000


def _reachable(wps: list[WyckoffPosition], limit: int) -> list[set[int]]:
    """``reach[i]``: atom counts ``<= limit`` that Wyckoff positions ``i..`` can hold.

    Positions with free parameters may be used any number of times, parameter-free ones once
    (across species this is a relaxation, which keeps it a valid pruning test).
    """
    reach: list[set[int]] = [set() for _ in range(len(wps) + 1)]
    reach[len(wps)] = {0}
    for i in range(len(wps) - 1, -1, -1):
        m = wps[i].multiplicity
        cur = set(reach[i + 1])
        if wps[i].dof == 0:
            cur |= {s + m for s in reach[i + 1] if s + m <= limit}
        else:
            for s in sorted(cur):
                t = s + m
                while t <= limit and t not in cur:
                    cur.add(t)
                    t += m
        reach[i] = cur
    return reach


class _Search:
    """Depth-first search over species, then over Wyckoff positions (largest multiplicity first).

    Pruning: a species' remaining count must be reachable by the remaining positions (relaxed:
    parameter-free positions once per species), and the species whose count no combination of
    positions with free parameters reaches need one parameter-free position each, so they cannot
    outnumber the unused ones.
    """

    def __init__(
        self, wps: list[WyckoffPosition], species: list[tuple[int, int]], max_nodes: int
    ) -> None:
        self.wps = wps
        self.species = species
        limit = max((c for _, c in species), default=0)
        self.reach = _reachable(wps, limit)
        free_reach = _reachable([wp for wp in wps if wp.dof > 0], limit)[0]
        needs_fixed = [int(c not in free_reach) for _, c in species]
        self.needs_fixed_after = [sum(needs_fixed[s:]) for s in range(len(species) + 1)]
        self.num_fixed = sum(1 for wp in wps if wp.dof == 0)
        self.max_nodes = max_nodes
        self.nodes = 0

    @property
    def exhausted(self) -> bool:
        """True if the node budget ran out (the search may have missed templates)."""
        return self.nodes > self.max_nodes

    def run(self) -> Iterator[list[tuple[str, int]]]:
        yield from self._species(0, frozenset(), [])

    def _species(
        self, s: int, used: frozenset[str], chosen: list[tuple[str, int]]
    ) -> Iterator[list[tuple[str, int]]]:
        if s == len(self.species):
            yield list(chosen)
            return
        if self.needs_fixed_after[s] > self.num_fixed - len(used):
            return
        z, count = self.species[s]
        for letters in self._fill(0, count, used, []):
            new_used = used | {x for x in letters if self._fixed(x)}
            yield from self._species(s + 1, new_used, chosen + [(x, z) for x in letters])

    def _fixed(self, letter: str) -> bool:
        return any(wp.letter == letter and wp.dof == 0 for wp in self.wps)

    def _fill(
        self, i: int, remaining: int, used: frozenset[str], letters: list[str]
    ) -> Iterator[list[str]]:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            return
        if remaining == 0:
            yield list(letters)
            return
        if i == len(self.wps) or remaining not in self.reach[i]:
            return
        wp = self.wps[i]
        if wp.dof == 0:
            max_copies = 0 if wp.letter in used else 1
        else:
            max_copies = remaining // wp.multiplicity
        for copies in range(min(max_copies, remaining // wp.multiplicity), -1, -1):
            yield from self._fill(
                i + 1, remaining - copies * wp.multiplicity, used, letters + [wp.letter] * copies
            )


def _describe(composition: Mapping[int, int]) -> str:
    return " ".join(f"{Element.from_Z(z).symbol}{n}" for z, n in composition.items())


def enumerate_templates(
    space_group: int,
    composition: Mapping[str | int, int] | Composition | str,
    max_templates: int = 100,
) -> list[WyckoffTemplate]:
    """Wyckoff templates of a space group whose conventional cell holds exactly ``composition``.

    Templates come in a deterministic order: species by decreasing count, and within a species
    Wyckoff positions of larger multiplicity first (so templates with few orbits come early).

    Args:
        space_group: 1-230.
        composition: atom counts of the *conventional* cell, e.g. ``"Na4Cl4"`` for rock salt in
            Fm-3m (``"NaCl"`` fits no template there: the smallest orbit has 4 atoms).
        max_templates: stop after this many templates.

    Returns:
        Between 1 and ``max_templates`` templates.

    Raises:
        InputError: bad space group or composition, or no Wyckoff combination of the group fits
            the composition (the message suggests multiples of the composition that do fit), or
            none was found within ``MAX_SEARCH_NODES`` search steps.
    """
    group = get_space_group(space_group)
    counts = parse_composition(composition)
    if max_templates < 1:
        raise InputError(f"max_templates must be at least 1, got {max_templates}")
    found, exhausted = _search(group.number, counts, max_templates, MAX_SEARCH_NODES)
    if found:
        return found
    if exhausted:
        raise InputError(
            f"no Wyckoff template of space group {group.number} ({group.symbol}) found for "
            f"{_describe(counts)} within the search budget of {MAX_SEARCH_NODES} steps"
        )
    mults = sorted({wp.multiplicity for wp in wyckoff_positions(group.number)})
    hint = ""
    multiples = [
        k
        for k in range(2, 9)
        if _search(group.number, {z: k * n for z, n in counts.items()}, 1, MAX_SEARCH_NODES // 100)[
            0
        ]
    ]
    if multiples:
        hint = f"; multiples of the composition that fit: x{', x'.join(map(str, multiples))}"
    raise InputError(
        f"composition {_describe(counts)} fits no combination of Wyckoff positions of space group "
        f"{group.number} ({group.symbol}, conventional cell; multiplicities "
        f"{', '.join(map(str, mults))}){hint}"
    )


def _search(
    number: int, counts: Mapping[int, int], max_templates: int, max_nodes: int
) -> tuple[list[WyckoffTemplate], bool]:
    """Run the search: up to ``max_templates`` templates, and whether the budget ran out."""
    wps = sorted(wyckoff_positions(number), key=lambda wp: (-wp.multiplicity, -wp.index))
    species = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    out: list[WyckoffTemplate] = []
    search = _Search(wps, species, max_nodes)
    for orbits in search.run():
        out.append(
            WyckoffTemplate(
                space_group=number,
                letters=tuple(x for x, _ in orbits),
                atom_types=tuple(z for _, z in orbits),
            )
        )
        if len(out) >= max_templates:
            break
    return out, search.exhausted
