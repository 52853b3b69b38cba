"""CSP match rate per crystal system of the reference: where a CSP model fails.

    python scripts/csp_by_system.py --predictions runs/s17/val_l5 \\
        --reference ../shared/data/mp_20/val.csv.gz --limit 1000

The same pieces as ``crystalflow evaluate csp``: the reference table and prediction files
(``DIR/<material_id>.cif`` or ``DIR/<material_id>_<k>.cif``; a reference without one is a miss),
each reference scored by :func:`crystalflow.metrics.csp.score_reference_task` and the rates
aggregated by :func:`crystalflow.metrics.csp.aggregate_csp_scores`, here once per crystal system
spglib (``--symprec``, default 0.1) assigns the reference. Prints a Markdown table; its ``all``
row equals ``evaluate csp``'s rates. Unreadable reference rows are skipped, as there.
"""

from __future__ import annotations

import argparse
import collections
import warnings
from pathlib import Path

SYSTEMS = ("cubic", "hexagonal", "trigonal", "tetragonal", "orthorhombic", "monoclinic", "triclinic")


def crystal_system(cif: str, symprec: float) -> str:
    """The crystal system (``"cubic"``, ..., ``"triclinic"``) spglib assigns to a CIF string."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from crystalflow.metrics.io import parse_cif

    return SpacegroupAnalyzer(parse_cif(cif), symprec=symprec).get_crystal_system()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=Path, required=True, help="folder of <material_id>.cif")
    parser.add_argument("--reference", type=Path, required=True, help="CSV with material_id and cif")
    parser.add_argument("--limit", type=int, default=None, help="first N references only")
    parser.add_argument("--symprec", type=float, default=0.1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    from crystalflow.metrics.csp import aggregate_csp_scores, score_reference_task
    from crystalflow.metrics.io import group_csp_predictions, read_reference_table

    table = read_reference_table(args.reference, args.limit)
    groups = group_csp_predictions(args.predictions, table["material_id"].tolist())
    by_system: dict[str, list] = collections.defaultdict(list)
    for ref_id, cif in zip(table["material_id"], table["cif"]):
        result = score_reference_task((cif, [str(p) for p in groups[ref_id]], None))
        if isinstance(result, str):  # unreadable reference row: skipped, as evaluate csp does
            continue
        scores = result[0]
        by_system[crystal_system(cif, args.symprec)].append(scores)
        by_system["all"].append(scores)
    max_k = max(len(g) for g in groups.values())
    print("| crystal system | rows | match rate | RMSE | unfiltered |")
    print("|---|---|---|---|---|")
    for key in [k for k in (*SYSTEMS, "all") if k in by_system]:
        m = aggregate_csp_scores(by_system[key], max_k)
        rmse = "-" if m.rmse is None else f"{m.rmse:.3f}"
        print(f"| {key} | {m.num_references} | {100 * m.match_rate:.1f}% | {rmse} | {100 * m.match_rate_unfiltered:.1f}% |")


if __name__ == "__main__":
    main()
