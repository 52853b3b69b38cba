"""A composition plus a space-group request (and optionally Wyckoff positions) as Wyckoff templates.

``predict --composition X --space-group N [--wyckoff ...]`` and the composition pipeline's
fallback turn a formula into the conventional-cell :class:`~crystalflow.symmetry.WyckoffTemplate`
objects a space-group flow samples: :func:`templates_for` enumerates them, or assigns elements to
the user's Wyckoff letters (checked: known letters, multiplicities, a cell of the formula).
"""

from __future__ import annotations

from pymatgen.core import Composition

from crystalflow.crystal_tasks.composition import atom_types_for
from crystalflow.errors import InputError

__all__ = ["MAX_TEMPLATES", "templates_for"]

#: most Wyckoff templates a composition + space-group request samples across
MAX_TEMPLATES = 64


def _parse_wyckoff(spec: str, space_group: int) -> list[tuple[str | None, str]]:
    """``"4a,4b"`` / ``"a b"`` / ``"Na:4a,Cl:4b"`` -> ``[(element or None, letter)]`` (checked)."""
    import re

    from crystalflow.symmetry import wyckoff_position

    items = [x for x in re.split(r"[,\s]+", spec.strip()) if x]
    if not items:
        raise InputError("wyckoff is empty; give letters such as '4a,4b' or 'Na:4a,Cl:4b'",
                         parameters=("wyckoff",))
    out = []
    for item in items:
        m = re.fullmatch(r"(?:([A-Z][a-z]?):)?(\d*)([a-zA-Z])", item)
        if not m:
            raise InputError(f"cannot read Wyckoff position {item!r}; write e.g. 4a or Na:4a")
        element, mult, letter = m.groups()
        wp = wyckoff_position(space_group, letter)  # InputError for an unknown letter
        if mult and int(mult) != wp.multiplicity:
            raise InputError(f"Wyckoff position {letter} of space group {space_group} has "
                             f"multiplicity {wp.multiplicity}, not {mult}")
        out.append((element, letter))
    return out


def _assignments(orbits: list[tuple[str | None, str]], counts: dict[int, int], space_group: int,
                 limit: int = MAX_TEMPLATES) -> list:
    """Templates assigning an element to every orbit so the cell holds exactly ``counts``."""
    from pymatgen.core import Element

    from crystalflow.symmetry import WyckoffTemplate, wyckoff_position

    mults = [wyckoff_position(space_group, letter).multiplicity for _, letter in orbits]
    fixed = [Element(e).Z if e else None for e, _ in orbits]
    found: list = []
    remaining = dict(counts)

    def rec(i: int, chosen: list[int]) -> None:
        if len(found) >= limit:
            return
        if i == len(orbits):
            if all(v == 0 for v in remaining.values()):
                try:
                    found.append(WyckoffTemplate(space_group, tuple(l for _, l in orbits), tuple(chosen)))
                except InputError:
                    pass
            return
        options = [fixed[i]] if fixed[i] is not None else list(remaining)
        for z in options:
            if remaining.get(z, 0) >= mults[i]:
                remaining[z] -= mults[i]
                rec(i + 1, chosen + [z])
                remaining[z] += mults[i]

    rec(0, [])
    return found


def templates_for(
    composition: str | Composition, space_group: int, *, wyckoff: str | None = None,
    max_atoms: int | None = None, num_atoms: int | None = None, formula_units: int | None = None,
    limit: int = MAX_TEMPLATES,
) -> list:
    """Wyckoff templates of ``space_group`` for a composition (conventional cell).

    The user's formula is a ratio: the conventional cell holds ``k`` reduced formula units, with
    ``k`` fixed by ``num_atoms`` / ``formula_units`` when given and otherwise every ``k`` whose
    cell fits (``k * atoms per unit <= max_atoms``), smallest cells first. With ``wyckoff`` the
    orbits are the user's; elements are assigned to them (or taken as written, ``Na:4a``).

    Raises:
        InputError: space group outside 1-230, unknown Wyckoff letter, or no template fits.
    """
    from crystalflow.crystal_tasks.composition import parse_composition as parse_formula
    from crystalflow.symmetry import enumerate_templates, get_space_group, wyckoff_position

    group = get_space_group(int(space_group))  # InputError outside 1-230
    comp = parse_formula(composition)
    reduced, _ = comp.get_reduced_composition_and_factor()
    per_unit = int(round(reduced.num_atoms))
    unit = {el.Z: int(round(n)) for el, n in reduced.items()}
    if num_atoms is not None or formula_units is not None:
        ks = [len(atom_types_for(composition, num_atoms, formula_units)) // per_unit]
    else:
        top = max_atoms if max_atoms is not None else 8 * per_unit
        ks = list(range(1, max(1, top // per_unit) + 1))
    name = reduced.reduced_formula
    if wyckoff is not None:
        orbits = _parse_wyckoff(wyckoff, group.number)
        total = sum(wyckoff_position(group.number, l).multiplicity for _, l in orbits)
        if total % per_unit or total // per_unit not in ks:
            raise InputError(
                f"Wyckoff positions {wyckoff} hold {total} atoms, which is not a cell of {name} "
                f"({per_unit} atoms per formula unit"
                + (f", at most {max_atoms} atoms)" if max_atoms and num_atoms is None and formula_units is None else ")"))
        k = total // per_unit
        found = _assignments(orbits, {z: k * n for z, n in unit.items()}, group.number, limit)
        if not found:
            raise InputError(f"Wyckoff positions {wyckoff} of space group {group.number} "
                             f"({group.symbol}) cannot hold {name} x{k} (each position holds "
                             f"one element; parameter-free positions at most once)")
        return found
    found = []
    for k in ks:
        try:
            found.extend(enumerate_templates(group.number, {z: k * n for z, n in unit.items()},
                                             max_templates=limit - len(found)))
        except InputError:
            continue
        if len(found) >= limit:
            break
    if not found:
        cells = (f"{ks[0] * per_unit} atoms" if len(ks) == 1 else
                 f"any cell of up to {ks[-1] * per_unit} atoms")
        raise InputError(f"composition {name} fits no combination of Wyckoff positions of space "
                         f"group {group.number} ({group.symbol}) in {cells} (conventional cell)")
    return found
