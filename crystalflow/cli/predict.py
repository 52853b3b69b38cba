"""``crystalflow predict``: structures for a composition, or for every row of a CSV."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict crystal structures of compositions (CSP)",
                       description="Predict structures with a CSP checkpoint and write CIF files.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--composition", help="formula, e.g. SrTiO3")
    src.add_argument("--from-csv", help="CSV with material_id and cif columns (gzip ok)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--num-atoms", type=int, help="atoms in the cell")
    size.add_argument("--formula-units", type=int, help="formula units Z in the cell")
    p.add_argument("--space-group", type=int, metavar="N",
                   help="with --composition: condition on space group N (1-230; sgcsp checkpoint)")
    p.add_argument("--wyckoff", help="with --space-group: Wyckoff positions, e.g. '4a,4b' or "
                   "'Na:4a,Cl:4b' (default: enumerate the compatible templates)")
    p.add_argument("--use-space-group", action="store_true",
                   help="with --from-csv: condition each row on its own space group and Wyckoff "
                   "template (spglib, --symprec); writes conventional cells")
    p.add_argument("--symprec", type=float, default=0.1,
                   help="spglib tolerance for --use-space-group (default 0.1)")
    p.add_argument("--limit", type=int, help="only the first N CSV rows")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--steps", type=int, help="ODE steps (default: the checkpoint's)")
    p.add_argument("--method", choices=["euler", "midpoint", "rk4"])
    p.add_argument("--checkpoint", help="checkpoint path or bundled name (default: csp_mp_20.pt, "
                   "or sgcsp_mp_20.pt with --space-group / --use-space-group)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int)
    p.add_argument("--workers", type=int, default=1,
                   help="with --use-space-group: processes for the spglib analysis of the rows (cached)")
    p.add_argument("--out", required=True, help="output directory for CIF files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from crystalflow.crystals.crystal import write_text_atomic
    from crystalflow.errors import InputError
    from crystalflow.prediction import predict, predict_from_csv

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.from_csv and args.space_group is not None:
        raise InputError("--space-group goes with --composition; with --from-csv use --use-space-group")
    if args.composition and args.use_space_group:
        raise InputError("--use-space-group goes with --from-csv; with --composition give --space-group N")
    if args.wyckoff is not None and args.space_group is None:
        raise InputError("--wyckoff needs --space-group")
    if args.from_csv:
        common = dict(limit=args.limit, num_samples=args.num_samples, steps=args.steps,
                      method=args.method, checkpoint=args.checkpoint, seed=args.seed,
                      batch_size=args.batch_size)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if args.use_space_group:
                from crystalflow.prediction import predict_from_csv_with_space_group

                res = predict_from_csv_with_space_group(args.from_csv, args.out, symprec=args.symprec,
                                                        workers=args.workers, **common)
            else:
                res = predict_from_csv(args.from_csv, args.out, **common)
        for w in caught:
            if "skipping" in str(w.message):
                print(f"warning: {w.message}")
        print(json.dumps({"rows": res.rows, "skipped": res.skipped, "written": res.written,
                          "out": str(res.out_dir)}))
        return 0
    if args.space_group is not None:
        from crystalflow.prediction import predict_with_space_group

        structures = predict_with_space_group(
            args.composition, args.space_group, wyckoff=args.wyckoff, num_atoms=args.num_atoms,
            formula_units=args.formula_units, num_samples=args.num_samples, steps=args.steps,
            method=args.method, checkpoint=args.checkpoint, seed=args.seed,
        )
    else:
        structures = predict(
            args.composition, num_atoms=args.num_atoms, formula_units=args.formula_units,
            num_samples=args.num_samples, steps=args.steps, method=args.method,
            checkpoint=args.checkpoint, seed=args.seed,
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = structures[0].composition.reduced_formula
    for k, s in enumerate(structures):
        path = out / f"{name}_{k}.cif"
        write_text_atomic(path, s.to(fmt="cif"))
        print(f"{path}  {s.composition.formula}  volume/atom {s.volume / len(s):.2f} A^3")
    print(f"wrote {len(structures)} CIF files to {out}")
    return 0
