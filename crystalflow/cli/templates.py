"""``crystalflow templates``: build a template library, list the templates proposed for a formula."""

from __future__ import annotations

import argparse
import json

from crystalflow.cli._checks import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("templates", help="template libraries of known crystals (build, propose)",
                       description="Template libraries for the composition pipeline of 'predict'.")
    cmds = p.add_subparsers(dest="templates_command", metavar="ACTION", required=True)
    b = cmds.add_parser("build", help="analyse crystals (spglib) and write a library file",
                        description="Analyse every crystal (spglib, symprec 0.1) and write a "
                        "versioned library: space group, Wyckoff letters and element of every "
                        "orbit, conventional lattice, one representative per orbit.")
    b.add_argument("--data", action="append", required=True, metavar="CSV|DIR",
                   help="CSV with material_id and cif columns (gzip ok) or a folder of .cif files; repeatable")
    b.add_argument("--exclude", action="append", default=[], metavar="CSV[:N]",
                   help="leave out the crystals of this CSV (its first N rows with :N, its last N with :-N); repeatable")
    b.add_argument("--out", required=True, help="library file to write (e.g. my_library.pt)")
    b.add_argument("--symprec", type=float, default=0.1, help="spglib tolerance in A (default 0.1)")
    b.add_argument("--workers", type=positive_int, default=1, help="processes for the analysis")
    b.set_defaults(func=run_build)
    q = cmds.add_parser("propose", help="the templates proposed for a composition",
                        description="Library crystals of the same anonymous formula with the "
                        "elements substituted, best first (no structure is built).")
    q.add_argument("composition", help="formula of the cell, e.g. SrTiO3 or Na4Cl4")
    q.add_argument("--library", help="library file (default: the bundled MP-20 library)")
    q.add_argument("--top", type=positive_int, default=10)
    q.add_argument("--json", action="store_true", help="one JSON object per line")
    q.set_defaults(func=run_propose)


#: skipped rows ``templates build`` names one by one (the rest are counted)
SHOW_SKIPPED = 5


def run_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from crystalflow.cli import print_skipped
    from crystalflow.errors import InputError
    from crystalflow.outputs import prepare_output_file
    from crystalflow.templates.build import build_library

    out = Path(args.out)
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name such as {out / 'library.pt'}")
    if args.symprec <= 0:
        raise InputError(f"--symprec must be > 0, got {args.symprec}")
    prepare_output_file(out, overwrite=True)  # a writable place, before the analysis
    lib = build_library(args.data, out, exclude=args.exclude, symprec=args.symprec,
                        workers=args.workers)
    print_skipped(lib.skipped_rows, limit=SHOW_SKIPPED)
    print(json.dumps({"crystals": len(lib), "formulas": len(lib.by_formula), "skipped": len(lib.skipped_rows),
                      "sources": list(lib.sources), "out": str(out)}))
    return 0


def run_propose(args: argparse.Namespace) -> int:
    from collections import Counter

    from crystalflow.crystal_tasks.composition import atom_types_for
    from crystalflow.templates import load_library, propose

    counts = dict(Counter(atom_types_for(args.composition)))
    props = propose(load_library(args.library), counts, top=args.top)
    if not props:
        print("no template of this anonymous formula in the library "
              "(predict falls back to enumerated space-group templates and the P1 flow)")
        return 0
    for k, p in enumerate(props):
        row = {"rank": k, "template": p.label, "from": p.entry.material_id,
               "distance": round(p.distance, 3), "support": p.support, "same_size": p.same_size}
        print(json.dumps(row) if args.json else
              f"{k:>3}  {p.label:<40} from {p.entry.material_id:<12} distance {p.distance:5.2f}  "
              f"support {p.support:>4}  {'' if p.same_size else '(other cell size)'}")
    return 0
