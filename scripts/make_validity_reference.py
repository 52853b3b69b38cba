"""Compute, once, the validity labels of the reference set used by tests/metrics/test_validity_crosscheck.py.

This is an *independent* implementation of the documented definitions (CDVAE, Xie et al. 2022),
deliberately sharing no code with ``crystalflow.metrics.validity``:

* structure: ASE ``neighbor_list`` finds every pair of *different* atoms closer than 0.5 A under
  periodic boundary conditions; valid when there is none and the volume is >= 0.1 A^3;
* composition: counts reduced by their gcd; one element -> valid; only SMACT metals -> valid;
  otherwise valid when ``smact.neutral_ratios`` finds the reduced counts charge neutral for some
  combination of SMACT 2.x default oxidation states (``oxidation_states_smact14``) and that
  combination passes ``smact.screening.pauling_test`` (a missing electronegativity counts as a pass,
  as the ``TypeError`` did in CDVAE's environment).

Usage: python scripts/make_validity_reference.py   (rewrites tests/metrics/validity_reference_labels.py)
"""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from metrics.validity_reference import reference_structures  # noqa: E402


def independent_structure_valid(structure) -> bool:
    from ase.neighborlist import neighbor_list
    from pymatgen.io.ase import AseAtomsAdaptor

    if structure.volume < 0.1:
        return False
    atoms = AseAtomsAdaptor.get_atoms(structure)
    i, j = neighbor_list("ij", atoms, 0.5, self_interaction=False)
    return not bool((i != j).any())


def independent_comp_valid(structure) -> bool:
    import smact
    from smact.screening import pauling_test

    amounts = structure.composition.get_el_amt_dict()
    symbols = sorted(amounts, key=lambda s: smact.Element(s).number)
    counts = [int(round(amounts[s])) for s in symbols]
    g = math.gcd(*counts)
    counts = [c // g for c in counts]
    if len(symbols) == 1:
        return True
    if all(s in smact.metals for s in symbols):
        return True
    elements = [smact.Element(s) for s in symbols]
    enegs = [e.pauling_eneg for e in elements]
    ox_lists = [e.oxidation_states_smact14 or [] for e in elements]
    for ox in itertools.product(*ox_lists):
        ratios = smact.neutral_ratios(list(ox), stoichs=[[c] for c in counts], threshold=max(counts))
        if isinstance(ratios, tuple):  # SMACT 2.x returned (exists, ratios)
            ratios = ratios[1]
        if not ratios:
            continue
        if all(e is not None for e in enegs):
            passed = pauling_test(list(ox), enegs)
        else:  # SMACT >= 3 fails on missing data; CDVAE's TypeError accepted it
            passed = _pauling_none_safe(ox, enegs)
        if passed:
            return True
    return False


def _pauling_none_safe(ox, enegs) -> bool:
    """Pauling test scanning pairs in order; a pair lacking data ends the scan as a pass."""
    for a, b in itertools.combinations(range(len(ox)), 2):
        if ox[a] * ox[b] >= 0:
            continue
        if enegs[a] is None or enegs[b] is None:
            return True
        cation, anion = (a, b) if ox[a] > 0 else (b, a)
        if enegs[cation] >= enegs[anion]:
            return False
    return True


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    structures = reference_structures()
    labels = "".join(
        f"{int(independent_structure_valid(s))}{int(independent_comp_valid(s))}" for s in structures
    )
    struct_rate = sum(int(labels[2 * i]) for i in range(len(structures))) / len(structures)
    comp_rate = sum(int(labels[2 * i + 1]) for i in range(len(structures))) / len(structures)
    out = ROOT / "tests" / "metrics" / "validity_reference_labels.py"
    chunks = [labels[i : i + 80] for i in range(0, len(labels), 80)]
    body = "\n".join(f'    "{c}"' for c in chunks)
    out.write_text(
        '"""Validity labels of ``validity_reference.reference_structures()``, written by\n'
        "scripts/make_validity_reference.py (independent implementation). Two digits per structure:\n"
        '(structurally valid, SMACT-valid)."""\n\n'
        f"STRUCT_VALID_RATE = {struct_rate!r}\nCOMP_VALID_RATE = {comp_rate!r}\n\n"
        f"LABELS = (\n{body}\n)\n"
    )
    print(f"{len(structures)} structures: struct_valid={struct_rate:.4f} comp_valid={comp_rate:.4f} -> {out}")


if __name__ == "__main__":
    main()
