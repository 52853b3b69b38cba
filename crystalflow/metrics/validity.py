"""Structural and compositional validity of crystals, as CDVAE defines them.

Both checks follow Xie et al., "Crystal Diffusion Variational Autoencoder for Periodic Material
Generation" (ICLR 2022), as implemented in CDVAE's ``scripts/eval_utils.py`` and
``scripts/compute_metrics.py`` and reused unchanged by DiffCSP, FlowMM and later work:

* *structural validity*: the smallest distance between two different atoms (minimum-image
  convention, so periodic images count) is at least 0.5 A, and the cell volume is at least
  0.1 A^3 (CDVAE's "unrealistically small lattice" rule); a cell with a non-positive lattice
  length cannot be built and is invalid;
* *compositional validity* (``smact_validity``): the composition, reduced by the gcd of its counts,
  is a single element, or made only of metals (SMACT's metal list), or admits at least one
  combination of SMACT oxidation states that is charge neutral in exactly these proportions and
  passes the Pauling electronegativity test (cations less electronegative than anions).

SMACT >= 3 changed defaults that CDVAE relied on; this module pins the behaviour of SMACT 2.2.1,
the version CDVAE's environment pins: ``Element.oxidation_states`` now holds the ICSD-24 list, so
we read ``oxidation_states_smact14`` (the default list of SMACT 2.x, data file
``oxidation_states.txt``), with the one entry that file changed since 2.2.1 restored (Ir: 2.2.1
lists -2 where SMACT 4 lists -3, :data:`SMACT_221_OXIDATION_STATES`); and the Pauling test is
re-stated with 2.2.1's semantics (:func:`_pauling_test_cdvae`).
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Sequence

import numpy as np
from pymatgen.core import Composition, Element, Structure

from crystalflow.errors import InputError

__all__ = [
    "CDVAE_METALS",
    "DISTANCE_CUTOFF",
    "MIN_VOLUME",
    "cell_volume",
    "degenerate_volume",
    "is_valid",
    "min_interatomic_distance",
    "smact_validity",
    "structure_validity",
]

#: CDVAE's minimum interatomic distance (A)
DISTANCE_CUTOFF = 0.5
#: CDVAE's minimum cell volume (A^3)
MIN_VOLUME = 0.1

#: ``smact.metals`` as of SMACT 2.x (the list CDVAE's ``include_alloys`` rule uses); SMACT 4.0
#: ships the same 79 elements. Pinned here so that a future SMACT cannot silently change it.
CDVAE_METALS: frozenset[str] = frozenset(
    "Li Be Na Mg Al K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In "
    "Sn Sb Cs Ba La Ce Pr Nd Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po Fr "
    "Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No".split()
)


def cell_volume(structure: Structure) -> float:
    """Cell volume (A^3), NaN for a non-finite lattice."""
    matrix = structure.lattice.matrix
    return float(abs(np.linalg.det(matrix))) if np.all(np.isfinite(matrix)) else float("nan")


def degenerate_volume(volume: float) -> bool:
    """A cell volume (A^3) that is not finite or below CDVAE's :data:`MIN_VOLUME`."""
    return not (np.isfinite(volume) and abs(volume) >= MIN_VOLUME)


def min_interatomic_distance(structure: Structure) -> float:
    """Smallest distance between two different sites, periodic images included (A).

    Uses pymatgen's minimum-image ``distance_matrix`` exactly as CDVAE does; the distance of a site
    to its own periodic image is not considered (CDVAE pads the diagonal). A one-site structure
    returns ``inf``. A degenerate cell (:func:`degenerate_volume`: non-finite lattice or volume
    below :data:`MIN_VOLUME`) returns 0 without a search: its periodic images pack arbitrarily
    close, and pymatgen's minimum-image search raises LinAlgError on a zero-volume lattice (which
    a flow's predicted endpoint can have).
    """
    if degenerate_volume(cell_volume(structure)):
        return 0.0
    if len(structure) < 2:
        return math.inf
    dist = np.array(structure.distance_matrix, dtype=float)
    np.fill_diagonal(dist, np.inf)
    return float(np.min(dist))


def structure_validity(structure: Structure, cutoff: float = DISTANCE_CUTOFF) -> bool:
    """CDVAE structural validity: all interatomic distances >= ``cutoff`` and volume >= 0.1 A^3.

    Definition: CDVAE ``structure_validity`` (Xie et al. 2022, eval_utils.py) together with its
    ``Crystal.get_structure`` rules (non-positive lattice lengths or a volume below 0.1 A^3 make the
    crystal invalid). Distances are minimum-image distances between different sites. Structures
    with non-finite lattice or coordinates are invalid.

    Args:
        structure: the crystal to check.
        cutoff: minimum allowed distance in A (0.5 in CDVAE).

    Returns:
        ``True`` when the structure is valid.
    """
    lattice = structure.lattice
    if not np.all(np.isfinite(lattice.matrix)) or min(lattice.abc) <= 0:
        return False
    if degenerate_volume(float(lattice.volume)):
        return False
    if len(structure) and not np.all(np.isfinite(structure.frac_coords)):
        return False
    dmin = min_interatomic_distance(structure)
    return bool(dmin >= cutoff)


#: oxidation states where SMACT 2.2.1's ``oxidation_states.txt`` differs from the ``smact14`` list
#: later SMACT versions keep (checked file against file for SMACT 2.2.1 and 4.0.2: only Ir differs;
#: the Pauling electronegativities are identical)
SMACT_221_OXIDATION_STATES: dict[str, tuple[int, ...]] = {"Ir": (-2, -1, 1, 2, 3, 4, 5, 6, 7, 8)}


@functools.lru_cache(maxsize=None)
def _smact_element_data(symbol: str) -> tuple[tuple[int, ...], float | None]:
    """Oxidation states (SMACT 2.x default list) and Pauling electronegativity of an element."""
    import smact

    try:
        element = smact.Element(symbol)
    except (KeyError, NameError) as exc:
        raise InputError(f"SMACT has no data for element {symbol!r}") from exc
    states = getattr(element, "oxidation_states_smact14", None)
    if states is None and not hasattr(element, "oxidation_states_smact14"):  # SMACT 2.x
        states = element.oxidation_states
    states = SMACT_221_OXIDATION_STATES.get(symbol, states)
    return tuple(states or ()), element.pauling_eneg


def _pauling_test_cdvae(ox_states: Sequence[int], electronegs: Sequence[float | None]) -> bool:
    """Pauling electronegativity test with the semantics CDVAE saw (SMACT 2.2.1's
    ``eneg_states_test`` inside CDVAE's ``except TypeError: electroneg_OK = True``).

    Pairs of sites are scanned in order. An opposite-sign pair where the cation is at least as
    electronegative as the anion fails; an opposite-sign pair lacking an electronegativity made
    2.2.1 compare ``None`` (``TypeError``), which CDVAE counts as passing; any other pair (same
    sign or a zero state) lacking an electronegativity fails, as in 2.2.1.
    """
    for (ox1, en1), (ox2, en2) in itertools.combinations(zip(ox_states, electronegs), 2):
        missing = en1 is None or en2 is None
        if (ox1 > 0 and ox2 < 0) or (ox1 < 0 and ox2 > 0):
            if missing:
                return True
            if ox1 > 0 and en1 >= en2:
                return False
            if ox1 < 0 and en1 <= en2:
                return False
        elif missing:
            return False
    return True


def _integer_counts(composition: Composition) -> dict[str, int]:
    """Element -> integer count of a composition, sorted by atomic number (CDVAE's order)."""
    amounts = composition.get_el_amt_dict()
    counts: dict[str, int] = {}
    for symbol in sorted(amounts, key=lambda s: Element(s).Z):
        value = amounts[symbol]
        if value <= 0:
            continue
        rounded = round(value)
        if abs(value - rounded) > 1e-6 or rounded == 0:
            raise InputError(f"composition {composition.formula!r} has non-integer amounts")
        counts[symbol] = int(rounded)
    if not counts:
        raise InputError("empty composition")
    return counts


def smact_validity(
    composition: Composition | str,
    use_pauling_test: bool = True,
    include_alloys: bool = True,
) -> bool:
    """CDVAE compositional validity (``smact_validity`` in CDVAE's eval_utils.py).

    The counts are reduced by their gcd. A single element is valid; with ``include_alloys`` a
    composition made only of metals is valid; otherwise the composition is valid when some
    assignment of one SMACT oxidation state per element (SMACT's default list, as of 2.x) is charge
    neutral for exactly these reduced counts (``smact.neutral_ratios`` with ``stoichs`` equal to the
    counts) and, with ``use_pauling_test``, cations are less electronegative than anions.

    Args:
        composition: a pymatgen Composition or a formula such as ``"NaCl"``.
        use_pauling_test: apply the electronegativity test (CDVAE: yes).
        include_alloys: accept all-metal compositions (CDVAE: yes).

    Returns:
        ``True`` when the composition is SMACT-valid.

    Raises:
        InputError: the formula cannot be parsed or has non-integer amounts.
    """
    if isinstance(composition, str):
        try:
            composition = Composition(composition)
        except Exception as exc:  # pymatgen raises several types for bad formulas
            raise InputError(f"cannot parse formula {composition!r}: {exc}") from exc
    try:
        counts = _integer_counts(composition)
    except (ValueError, KeyError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"invalid composition {composition!r}: {exc}") from exc
    symbols = tuple(counts)
    gcd = math.gcd(*counts.values())
    stoich = tuple(c // gcd for c in counts.values())
    if len(symbols) == 1:
        return True
    if include_alloys and all(s in CDVAE_METALS for s in symbols):
        return True
    data = [_smact_element_data(s) for s in symbols]
    ox_lists = [d[0] for d in data]
    electronegs = [d[1] for d in data]
    for ox_states in _neutral_combinations(ox_lists, stoich):
        if not use_pauling_test or _pauling_test_cdvae(ox_states, electronegs):
            return True
    return False


def _neutral_combinations(ox_lists: Sequence[Sequence[int]], stoich: Sequence[int]):
    """The combinations of ``itertools.product(*ox_lists)`` whose charge ``sum(o * n)`` is zero,
    found by a depth-first search that drops a partial choice as soon as the remaining elements
    can no longer bring the charge back to zero. Same set as filtering the full product (CDVAE's
    loop), without its exponential cost for compositions with many elements (a DNG sample with
    eight elements has millions of products)."""
    k = len(ox_lists)
    lo = [min(o) * n if o else 0 for o, n in zip(ox_lists, stoich)]
    hi = [max(o) * n if o else 0 for o, n in zip(ox_lists, stoich)]
    rest_lo = [sum(lo[i:]) for i in range(k + 1)]
    rest_hi = [sum(hi[i:]) for i in range(k + 1)]
    chosen: list[int] = []

    def search(i: int, charge: int):
        if i == k:
            if charge == 0:
                yield tuple(chosen)
            return
        for o in ox_lists[i]:
            c = charge + o * stoich[i]
            if c + rest_lo[i + 1] <= 0 <= c + rest_hi[i + 1]:
                chosen.append(o)
                yield from search(i + 1, c)
                chosen.pop()

    yield from search(0, 0)


def is_valid(structure: Structure, cutoff: float = DISTANCE_CUTOFF) -> bool:
    """CDVAE overall validity: :func:`structure_validity` and :func:`smact_validity` both hold.

    A composition SMACT cannot judge (non-integer occupancies, an element without SMACT data)
    counts as invalid rather than raising.
    """
    if not structure_validity(structure, cutoff):
        return False
    try:
        return smact_validity(structure.composition)
    except InputError:
        return False
