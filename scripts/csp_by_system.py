"""CSP match rate per crystal system of the reference: where a CSP model fails.

    python scripts/csp_by_system.py --predictions runs/s17/val_l5 \\
        --reference ../shared/data/mp_20/val.csv.gz --limit 1000

Scores each reference with the benchmark's own scorer (:func:`crystalflow.metrics.csp.score_cif_task`:
CDVAE validity filter, ``StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)``), one prediction
``DIR/<material_id>.cif`` per reference (a missing file is a miss), and groups the references by the
crystal system spglib (``--symprec``, default 0.1) assigns them. Prints a Markdown table: rows,
filtered and unfiltered match rate per system, and the overall rates (equal to ``evaluate csp``'s).
"""

from __future__ import annotations

import argparse
import collections
import warnings
from pathlib import Path

import pandas as pd


def crystal_system(cif: str, symprec: float) -> str:
    """The crystal system (``"cubic"``, ..., ``"triclinic"``) spglib assigns to a CIF string."""
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    return SpacegroupAnalyzer(Structure.from_str(cif, fmt="cif"), symprec=symprec).get_crystal_system()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=Path, required=True, help="folder of <material_id>.cif")
    parser.add_argument("--reference", type=Path, required=True, help="CSV with material_id and cif")
    parser.add_argument("--limit", type=int, default=None, help="first N references only")
    parser.add_argument("--symprec", type=float, default=0.1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    from crystalflow.metrics.csp import score_cif_task

    ref = pd.read_csv(args.reference)
    if args.limit is not None:
        ref = ref.iloc[: args.limit]
    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])  # rows, filtered, unfiltered
    for row in ref.itertuples():
        path = args.predictions / f"{row.material_id}.cif"
        scores, _, _ = score_cif_task((row.cif, [path] if path.exists() else [], None))
        system = crystal_system(row.cif, args.symprec)
        for key in (system, "all"):
            counts[key][0] += 1
            counts[key][1] += any(valid and rms is not None for valid, rms in scores)
            counts[key][2] += any(rms is not None for _, rms in scores)
    print("| crystal system | rows | match rate | unfiltered |")
    print("|---|---|---|---|")
    order = ["cubic", "hexagonal", "trigonal", "tetragonal", "orthorhombic", "monoclinic", "triclinic", "all"]
    for key in sorted(counts, key=lambda k: order.index(k) if k in order else -1):
        n, filtered, unfiltered = counts[key]
        print(f"| {key} | {n} | {100 * filtered / n:.1f}% | {100 * unfiltered / n:.1f}% |")


if __name__ == "__main__":
    main()
