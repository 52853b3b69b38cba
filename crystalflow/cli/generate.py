"""``crystalflow generate``: new crystals in a space group (de-novo generation)."""

from __future__ import annotations

import argparse
import json
import sys

from crystalflow.cli._checks import fraction, nonnegative_int, positive_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate", help="generate new crystals in a space group (de-novo generation)",
        description="Generate crystals with the DNG flow: one CIF per structure in OUT plus "
                    "OUT/summary.csv (formula, spglib space group at symprec 0.1, volume per atom, "
                    "and the check of each structure: ok, problem, min_distance). Structures that "
                    "fail the check are written, flagged and counted on stderr.",
    )
    p.add_argument("--space-group", type=int, metavar="N",
                   help="space group 1-230 (default: sampled from the training distribution)")
    p.add_argument("--num", type=positive_int, default=16, help="number of structures (default 16)")
    p.add_argument("--out", required=True, help="output directory (new or empty, see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty OUT, removing the files a previous run wrote there")
    p.add_argument("--elements", help="chemical system, e.g. Li,Fe,P,O (each element occurs, no other)")
    p.add_argument("--num-atoms", type=positive_int, help="atoms in the conventional cell")
    p.add_argument("--steps", type=positive_int, help="joint Euler steps (default: the checkpoint's)")
    p.add_argument("--retries", type=nonnegative_int, default=3,
                   help="rounds re-sampling structures that miss an element or fail the check (atoms "
                        "< 0.5 A apart, or with --space-group another spglib group); default 3, "
                        "0 keeps the raw samples")
    p.add_argument("--independent-types", action="store_true",
                   help="draw every Wyckoff orbit's element on its own instead of coupling them to a "
                        "number of distinct elements drawn from the training data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", help="checkpoint path or bundled name (default: dng_mp_20.pt)")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--threads", type=positive_int, help="torch CPU threads")
    p.add_argument("--json", action="store_true",
                   help="print the summary as JSON lines on stdout (notes go to stderr)")
    s = p.add_argument_group("steering and relaxation (crystalflow.crystal_tasks.steering, crystalflow.crystal_tasks.rewards)")
    s.add_argument("--steer", choices=("best-of-n", "smc"),
                   help="spend more sampling compute on lower reward (default reward: unrelaxed CHGNet "
                        "energy above the bundled MP-20 CHGNet hull): best-of-n keeps the best of "
                        "--particles samples; smc resamples the particles at --resample-at times "
                        "(Feynman-Kac steering) and keeps the best")
    s.add_argument("--particles", type=positive_int, help="particles per structure (default 4; with --steer)")
    s.add_argument("--resample-at", type=fraction, nargs="+", metavar="T",
                   help="smc resampling times in (0, 1) (default 0.5); reward calls per structure: "
                        "particles x (number of times + 1)")
    s.add_argument("--steer-temperature", type=positive_float,
                   help="temperature of the smc weights exp(-reward / T), eV/atom (default 0.1)")
    s.add_argument("--relax", action="store_true",
                   help="also relax every structure (its primitive cell) with CHGNet: OUT/relaxed/ gets the relaxed CIFs and "
                        "stability.csv (energy, E_hull against the bundled CHGNet hull)")
    s.add_argument("--relax-steps", type=positive_int, default=500, help="CHGNet FIRE steps (default 500)")
    s.add_argument("--fmax", type=positive_float, default=0.1, help="relaxation force threshold, eV/A")
    s.add_argument("--workers", type=positive_int, default=1, help="relaxation processes (default 1)")
    p.set_defaults(func=run)


def _print_table(rows: list[dict]) -> None:
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))


def run(args: argparse.Namespace) -> int:
    from crystalflow.crystal_tasks.generation import (
        _load, generate_crystals, parse_elements, select_skeletons, write_generated,
    )
    from crystalflow.outputs import prepare_output_dir, warn_failed_checks
    from crystalflow.symmetry.groups import check_space_group_number

    sg = None if args.space_group is None else check_space_group_number(args.space_group)
    elements = parse_elements(args.elements)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from crystalflow.crystal_tasks.steered_generation import make_sampler, relax_generated, steering_note

    flow, dist = _load(args.checkpoint, "cpu")
    sampler = make_sampler(flow, args.steer, args.particles, args.resample_at, args.steer_temperature)
    select_skeletons(dist, flow.allowed, sg, elements, args.num_atoms)  # refuse a request before --out
    out = prepare_output_dir(args.out, overwrite=args.overwrite)
    relaxed_dir = prepare_output_dir(out / "relaxed", overwrite=args.overwrite) if args.relax else None
    batch_size = args.batch_size if sampler is None else max(1, args.batch_size // sampler.config.particles)
    res = generate_crystals(flow, dist, args.num, space_group=sg, elements=elements,
                            num_atoms=args.num_atoms, steps=args.steps, seed=args.seed,
                            batch_size=batch_size, retries=args.retries, progress=True, sampler=sampler,
                            couple_elements=not args.independent_types)
    rows = write_generated(res.crystals, out, res.checks)
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        _print_table(rows)
    notes = sys.stderr if args.json else sys.stdout
    if sg is not None:
        hit = sum(r["space_group"] == sg for r in rows)
        print(f"{hit}/{len(rows)} structures have space group {sg} (spglib, symprec 0.1)", file=notes)
    if res.resampled:
        print(f"{res.resampled} structure(s) were re-sampled after failing the check", file=notes)
    if res.repaired:
        print(f"{len(res.repaired)} structure(s) needed the element-coverage fallback", file=notes)
    warn_failed_checks(rows, out)
    print(f"wrote {len(rows)} CIF files and summary.csv to {out}", file=notes)
    if sampler is not None:
        print(steering_note(sampler, args.steps or flow.config.steps), file=notes)
    if relaxed_dir is not None:
        print(relax_generated(res.crystals, relaxed_dir, steps=args.relax_steps, fmax=args.fmax,
                              workers=args.workers), file=notes)
    return 0
