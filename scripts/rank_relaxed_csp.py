"""Re-rank space-group CSP samples two ways and write one answer per row for each: the static
CHGNet energy pick (what ``predict --use-space-group --candidates K`` writes) and the two-stage pick
(:func:`crystalflow.crystal_tasks.prediction.lowest_energy_samples` with ``relax_steps``: the
``relax_top`` best re-ranked by their energy after that many CHGNet FIRE steps; the written sample
stays unrelaxed).

    crystalflow predict --from-csv ../shared/data/mp_20/val.csv.gz --use-space-group --num-samples 4 \\
        --limit 500 --out runs/s18/val500_n4
    python scripts/rank_relaxed_csp.py --samples runs/s18/val500_n4 --reference ../shared/data/mp_20/val.csv.gz \\
        --limit 500 --relax-steps 10 --relax-top 2 --out runs/s18/rank500
    crystalflow evaluate csp --predictions runs/s18/rank500/static --reference ../shared/data/mp_20/val.csv.gz --limit 500 --json
    crystalflow evaluate csp --predictions runs/s18/rank500/relaxed --reference ../shared/data/mp_20/val.csv.gz --limit 500 --json

``--samples`` holds ``<material_id>_<k>.cif`` (``predict --num-samples K``), read as ``evaluate csp``
reads predictions (:func:`crystalflow.metrics.io.group_csp_predictions`); the requested space
group of a row is spglib's (symprec 0.1) analysis of its reference CIF, as ``predict`` conditions on.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=Path, required=True)
    ap.add_argument("--reference", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--relax-steps", type=int, default=10)
    ap.add_argument("--relax-top", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from pymatgen.core import Structure

    from crystalflow.crystal_tasks.prediction import lowest_energy_samples
    from crystalflow.crystals.symmetric import analyze_cif
    from crystalflow.metrics.io import group_csp_predictions, read_reference_table

    table = read_reference_table(args.reference, args.limit)
    files = group_csp_predictions(args.samples, table["material_id"].tolist())
    ids, samples, requested = [], [], []
    for mid, cif in zip(table["material_id"], table["cif"]):
        group = []
        for f in files[mid]:
            try:
                group.append(Structure.from_file(f))
            except Exception:  # a collapsed sample pymatgen cannot read back: not a candidate
                pass
        if not group:
            continue
        ids.append(mid)
        samples.append(group)
        try:
            requested.append(analyze_cif(cif).template.space_group)
        except Exception:
            requested.append(None)
    for name, steps in (("static", 0), ("relaxed", args.relax_steps)):
        picks = lowest_energy_samples(samples, 1, requested=requested, relax_steps=steps,
                                      relax_top=args.relax_top, progress=True)
        out = args.out / name
        out.mkdir(parents=True, exist_ok=True)
        for mid, best in zip(ids, picks):
            if best:
                best[0].structure.to(filename=str(out / f"{mid}.cif"))
        print(f"{name}: {sum(bool(b) for b in picks)} of {len(ids)} rows written to {out}", flush=True)


if __name__ == "__main__":
    main()
