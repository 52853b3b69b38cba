"""Upper bounds of any one-output-per-composition CSP method on a benchmark split.

The CSP input is the cell's composition; the answer is one structure. Two facts of the data cap
the field's metric (validity-filtered StructureMatcher, stol 0.5 / ltol 0.3 / angle 10) for
*every* method, whatever its model:

1. **Composition validity**: a row whose composition fails CDVAE's SMACT test is a miss for any
   prediction (the filter counts it so).
2. **Several answers to one question**: rows of the split with the same cell composition whose
   structures do not match each other (polymorphs; for Perov-5, the A/B site orderings). One
   output that matches only one of two such rows scores at most the largest group of matching
   rows. Bound for such outputs: ``sum over compositions of the largest matching group / rows``.
   "Match" is the field's criterion (``get_rms_dist`` finds a mapping with RMS displacement <=
   stol), which is looser than ``StructureMatcher.fit`` (largest displacement <= stol): a
   structure *between* two non-matching rows can match both, so this bound holds for outputs
   that commit to one of them, not for hedged ones.
3. (Estimate) rows whose composition has another, non-matching row *outside* the split
   (``--other`` splits): the method must choose; ``--dataset-rows`` extrapolates the fraction of
   rows with such a sibling anywhere in the full dataset when the splits are random
   (Perov-5 enumerates both orderings of almost every composition: the expected ceiling is then
   about ``1 - paired / 2``).

    python scripts/csp_ceiling.py --csv ../shared/data/perov_5/test.csv.gz \
        --other ../shared/data/perov_5/val.csv.gz --dataset-rows 18928
    python scripts/csp_ceiling.py --csv ../shared/data/mp_20/test.csv.gz
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections import defaultdict


def _key(structure) -> tuple:
    return tuple(sorted((el.symbol, int(n)) for el, n in structure.composition.items()))


def _match(a, b) -> bool:
    """The field's criterion (CDVAE's ``get_rms_dist`` is not None: RMS displacement <= stol,
    looser than ``StructureMatcher.fit``, which bounds the largest displacement)."""
    from crystalflow.metrics.csp import rms_match

    return rms_match(a, b) is not None or rms_match(b, a) is not None


def _largest_matching_group(structures) -> int:
    """Size of the largest group of structures matching its first member (greedy clustering,
    as StructureMatcher.group_structures does)."""
    clusters: list[list] = []
    for s in structures:
        for c in clusters:
            if _match(c[0], s):
                c.append(s)
                break
        else:
            clusters.append([s])
    return max(len(c) for c in clusters)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--csv", required=True, help="the benchmark split (CDVAE layout)")
    ap.add_argument("--other", action="append", default=[], help="other splits of the dataset")
    ap.add_argument("--dataset-rows", type=int, help="rows of the full dataset (for the estimate)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

    from crystalflow.crystals.crystal import structure_from_cif
    from crystalflow.crystals.dataset import read_cif_table
    from crystalflow.metrics.validity import smact_validity

    table = read_cif_table(args.csv)
    refs = [structure_from_cif(c) for c in tqdm(table["cif"], desc="reading", leave=False)]
    groups: dict[tuple, list] = defaultdict(list)
    for s in refs:
        groups[_key(s)].append(s)
    n = len(refs)
    smact_ok = {k: bool(smact_validity(g[0].composition)) for k, g in groups.items()}
    best = {k: _largest_matching_group(g) if len(g) > 1 else 1
            for k, g in tqdm(groups.items(), desc="polymorphs", leave=False)}
    report = {
        "rows": n, "compositions": len(groups),
        "rows_failing_smact": sum(len(g) for k, g in groups.items() if not smact_ok[k]),
        "rows_sharing_composition_within_split": sum(len(g) for g in groups.values() if len(g) > 1),
        "ceiling_within_split_unfiltered": round(100 * sum(best.values()) / n, 2),
        "ceiling_within_split_filtered": round(
            100 * sum(b for k, b in best.items() if smact_ok[k]) / n, 2),
    }
    if args.other:
        other = defaultdict(list)
        for path in args.other:
            for c in read_cif_table(path)["cif"]:
                s = structure_from_cif(c)
                other[_key(s)].append(s)
        sibling = 0
        for k, g in groups.items():
            for s in g:
                outside = any(not _match(s, o) for o in other.get(k, []))
                inside = any(t is not s and not _match(s, t) for t in g)
                sibling += outside or inside
        report["rows_with_nonmatching_same_composition_row_elsewhere"] = round(sibling / n, 4)
        if args.dataset_rows:
            seen = n + sum(len(g) for g in other.values())
            expected = (seen - 1) / (args.dataset_rows - 1)
            paired = min(1.0, sibling / n / expected)
            report["estimated_rows_paired_in_full_dataset"] = round(paired, 4)
            report["expected_ceiling_if_pairs_are_two_answers"] = round(100 * (1 - paired / 2), 2)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
