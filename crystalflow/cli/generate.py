"""``crystalflow generate``: new crystals in a space group (de-novo generation)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate", help="generate new crystals in a space group (de-novo generation)",
        description="Generate crystals with the DNG flow: one CIF per structure in OUT plus "
                    "OUT/summary.csv (formula, spglib space group at symprec 0.1, volume per atom).",
    )
    p.add_argument("--space-group", type=int, metavar="N",
                   help="space group 1-230 (default: sampled from the training distribution)")
    p.add_argument("--num", type=int, default=16, help="number of structures (default 16)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--elements", help="chemical system, e.g. Li,Fe,P,O (each element occurs, no other)")
    p.add_argument("--num-atoms", type=int, help="atoms in the conventional cell")
    p.add_argument("--steps", type=int, help="joint Euler steps (default: the checkpoint's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", help="checkpoint path or bundled name (default: dng_mp_20.pt)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json", action="store_true", help="print the summary as JSON lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from crystalflow.generation import (
        _load, generate_crystals, parse_elements, write_generated,
    )
    from crystalflow.symmetry.groups import check_space_group_number

    if args.threads:
        torch.set_num_threads(args.threads)
    sg = None if args.space_group is None else check_space_group_number(args.space_group)
    elements = parse_elements(args.elements)
    flow, dist = _load(args.checkpoint, "cpu")
    res = generate_crystals(flow, dist, args.num, space_group=sg, elements=elements,
                            num_atoms=args.num_atoms, steps=args.steps, seed=args.seed,
                            batch_size=args.batch_size)
    rows = write_generated(res.crystals, args.out)
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        cols = list(rows[0])
        widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
        print("  ".join(c.ljust(widths[c]) for c in cols))
        for r in rows:
            print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
    if sg is not None:
        hit = sum(r["space_group"] == sg for r in rows)
        print(f"{hit}/{len(rows)} structures have space group {sg} (spglib, symprec 0.1)")
    if res.repaired:
        print(f"{len(res.repaired)} structure(s) needed the element-coverage fallback")
    print(f"wrote {len(rows)} CIF files and summary.csv to {args.out}")
    return 0
