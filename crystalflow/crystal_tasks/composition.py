"""Parse and check user compositions (formula strings) into atom lists."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable

from pymatgen.core import Composition, Element

from crystalflow.crystals.crystal import MAX_ATOMIC_NUM
from crystalflow.errors import InputError


#: an element symbol (or a closing bracket) and the amount written after it
_AMOUNT = re.compile(r"([A-Z][a-z]*|[)\]])\s*(\d+(?:\.\d*)?|\.\d+)?")
#: symbols pymatgen silently reads as hydrogen
_ISOTOPES = {"D": "deuterium", "T": "tritium"}


def check_formula_text(text: str) -> None:
    """Refuse what pymatgen would silently change: a zero amount (``Na0Cl`` would become ``Cl``)
    and the isotope symbols ``D`` / ``T`` (``D2O`` would become ``H2O``).

    Raises:
        InputError: one line naming the formula and the fix.
    """
    for symbol, amount in _AMOUNT.findall(text):
        if symbol in _ISOTOPES:
            raise InputError(f"formula {text!r} uses {symbol} ({_ISOTOPES[symbol]}); the models know "
                             "elements, not isotopes: write H")
        if amount and float(amount) == 0:
            what = "a bracketed group" if symbol in ")]" else symbol
            raise InputError(f"formula {text!r} gives {what} the amount 0; leave it out or give a "
                             "positive amount")


def parse_composition(formula: str | Composition) -> Composition:
    """A pymatgen Composition from a formula; clear :class:`InputError` on anything wrong."""
    if isinstance(formula, Composition):
        comp = formula
    else:
        text = str(formula).strip()
        if not text:
            raise InputError("empty formula")
        check_formula_text(text)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                comp = Composition(text)
        except Exception as exc:
            raise InputError(f"malformed formula {text!r}: {exc}") from exc
    if comp.num_atoms <= 0:
        raise InputError(f"formula {formula!r} has no atoms")
    for el, amt in comp.items():
        if not isinstance(el, Element) or getattr(el, "Z", None) is None:
            raise InputError(f"unknown element {getattr(el, 'symbol', el)!s} in {str(formula)!r}")
        if el.Z > MAX_ATOMIC_NUM:
            raise InputError(f"element {el} (Z={el.Z}) is beyond Z={MAX_ATOMIC_NUM}")
        if abs(amt - round(amt)) > 1e-6:
            raise InputError(f"formula {formula!r} has a fractional amount of {el}")
    return comp


def atom_types_for(
    formula: str | Composition, num_atoms: int | None = None, formula_units: int | None = None
) -> list[int]:
    """Atomic numbers of one cell of ``formula``.

    Args:
        formula: e.g. ``"SrTiO3"``; taken as written unless a size is given.
        num_atoms: total atoms in the cell; must be a multiple of the reduced formula's atoms.
        formula_units: number of reduced formula units Z in the cell.
    """
    comp = parse_composition(formula)
    if num_atoms is not None and formula_units is not None:
        raise InputError("give num_atoms or formula_units, not both", parameters=("num_atoms", "formula_units"))
    with warnings.catch_warnings():  # pymatgen warns on noble gases' missing electronegativity
        warnings.simplefilter("ignore", UserWarning)
        reduced, _ = comp.get_reduced_composition_and_factor()
    per_unit = int(round(reduced.num_atoms))
    if num_atoms is not None:
        if num_atoms < 1 or num_atoms % per_unit:
            raise InputError(
                f"{num_atoms} atoms is not a whole number of {reduced.reduced_formula} units "
                f"({per_unit} atoms each)")
        comp = reduced * (num_atoms // per_unit)
    elif formula_units is not None:
        if formula_units < 1:
            raise InputError("formula_units must be >= 1", parameters=("formula_units",))
        comp = reduced * formula_units
    types: list[int] = []
    for el, amt in sorted(comp.items(), key=lambda kv: kv[0].Z):
        types.extend([el.Z] * int(round(amt)))
    return types


def trained_elements(stats: dict) -> frozenset[int] | None:
    """Atomic numbers a checkpoint saw in training (its ``stats``: ``elements``, or a DNG
    checkpoint's ``allowed_types``). A checkpoint that does not record them but names a
    benchmark with a bundled template library (``dataset``: ``mp_20``, ``perov_5``, as the
    bundled CSP checkpoints do) gets that library's elements (its train + val crystals);
    otherwise ``None`` (nothing known)."""
    zs = stats.get("elements", stats.get("allowed_types"))
    if zs is not None:
        return frozenset(int(z) for z in zs)
    return _bundled_dataset_elements(str(stats.get("dataset", "")))


def _bundled_dataset_elements(dataset: str) -> frozenset[int] | None:
    """Elements of the bundled template library of a benchmark, ``None`` when there is none."""
    from crystalflow.templates import BUNDLED_LIBRARY, load_library

    if not dataset.replace("_", "").isalnum():
        return None
    path = BUNDLED_LIBRARY.with_name(f"{dataset}.pt")
    if not path.is_file():
        return None
    volumes = load_library(path).element_volumes
    return frozenset(z for z in range(1, len(volumes)) if float(volumes[z]) > 0)


def check_trained_elements(atom_types: Iterable[int], stats: dict, *, allow_unseen: bool = False,
                           option: str = "--allow-unseen-elements") -> None:
    """Refuse elements the checkpoint never saw in training (its predictions for them are
    meaningless); nothing is checked when the checkpoint does not record its elements.

    Args:
        atom_types: atomic numbers of the request.
        stats: the checkpoint's ``stats``.
        allow_unseen: skip the check (the user's explicit choice, ``option``).

    Raises:
        InputError: one line naming the elements and ``option``.
    """
    known = trained_elements(stats)
    if allow_unseen or known is None:
        return
    unseen = sorted(set(int(z) for z in atom_types) - known)
    if unseen:
        names = ", ".join(Element.from_Z(z).symbol for z in unseen)
        raise InputError(f"element(s) {names} never occur in the checkpoint's training data; "
                         f"its structures for them are not meaningful (add {option} to predict anyway)")
