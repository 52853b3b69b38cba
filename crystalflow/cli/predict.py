"""``crystalflow predict``: structures for a composition, or for every row of a CSV."""

from __future__ import annotations

import argparse
import json
import sys

from crystalflow.cli._checks import nonnegative_int, probability, positive_float, positive_int


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
    p.add_argument("--symprec", type=positive_float, default=0.1,
                   help="spglib tolerance for --use-space-group (default 0.1)")
    p.add_argument("--p1", action="store_true",
                   help="the P1 flow alone (no templates, no CHGNet ranking): the pre-pipeline path")
    p.add_argument("--limit", type=positive_int, help="only the first N CSV rows")
    p.add_argument("--num-samples", type=positive_int, default=1,
                   help="structures per composition: 1 writes <id>.cif, K > 1 the K best as "
                   "<id>_0.cif ... <id>_<K-1>.cif")
    p.add_argument("--candidates", type=positive_int, metavar="K",
                   help="with --space-group / --use-space-group: sample K structures per composition "
                   "and keep the --num-samples lowest in CHGNet energy per atom (default: "
                   "--num-samples samples, not ranked)")
    p.add_argument("--rank-relax-steps", type=nonnegative_int, default=0, metavar="N",
                   help="with --candidates: re-rank the two lowest by their CHGNet energy after N FIRE steps "
                   "(the written samples stay unrelaxed; with N = 10 on MP-20: +1.3 points on validation, "
                   "+0.4 on the full test split, BENCHMARKS.md)")
    p.add_argument("--steps", type=positive_int, help="ODE steps (default: the checkpoint's)")
    p.add_argument("--method", choices=["euler", "midpoint", "rk4"])
    p.add_argument("--checkpoint", help="checkpoint path or bundled name (default: csp_mp_20.pt, "
                   "or sgcsp_mp_20.pt with --space-group / --use-space-group)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--workers", type=positive_int, default=1,
                   help="with --use-space-group: processes for the spglib analysis of the rows (cached)")
    p.add_argument("--allow-unseen-elements", action="store_true",
                   help="predict compositions with elements no library crystal (with --p1 / "
                   "--space-group: no training crystal of the checkpoint) contains")
    p.add_argument("--out", required=True, help="output directory (new or empty, see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty OUT, removing the files a previous run wrote there")
    g = p.add_argument_group(
        "composition pipeline (the default without --space-group / --use-space-group / --p1)",
        "Known crystals of the same anonymous formula with the elements substituted (bundled "
        "MP-20 template library), optional space-group flow candidates, ranked by CHGNet energy; "
        "OUT/summary.csv says where each structure came from.")
    g.add_argument("--library", help="template library file (default: the bundled MP-20 library; "
                   "build one with 'crystalflow templates build')")
    g.add_argument("--templates", type=nonnegative_int, help="substituted templates per composition")
    g.add_argument("--flow-templates", type=nonnegative_int,
                   help="top templates that also get space-group flow candidates")
    g.add_argument("--flow-samples", type=nonnegative_int, help="flow samples per flow template")
    g.add_argument("--started-samples", type=nonnegative_int,
                   help="template-started flow samples per flow template")
    g.add_argument("--start-time", type=probability, help="start time t0 of template-started samples")
    g.add_argument("--p1-samples", type=nonnegative_int, help="P1 flow samples per composition")
    g.add_argument("--rank", choices=["energy", "similarity"],
                   help="rank by CHGNet energy (default) or by template similarity (no CHGNet)")
    g.add_argument("--relax", action=argparse.BooleanOptionalAction, default=False,
                   help="relax the best candidates with CHGNet (FIRE) and re-rank (default: no)")
    g.add_argument("--relax-top", type=positive_int, default=3,
                   help="with --relax: candidates relaxed per composition (default 3)")
    g.add_argument("--relax-steps", type=positive_int, default=100, help="FIRE step limit (default 100)")
    g.add_argument("--fmax", type=positive_float, default=0.1, help="force threshold, eV/A (default 0.1)")
    g.add_argument("--exact-size", action="store_true",
                   help="only templates with the requested number of formula units")
    g.add_argument("--fast", action="store_true",
                   help="substituted templates only, ranked by CHGNet static energy (seconds per composition)")
    g.add_argument("--chunk", type=positive_int, default=512,
                   help="with --from-csv: rows per chunk; each chunk's files are written when it is done")
    p.set_defaults(func=run)


def pipeline_config(args: argparse.Namespace):
    """The :class:`~crystalflow.crystal_tasks.pipeline.PipelineConfig` of the command-line options."""
    from dataclasses import replace

    from crystalflow.crystal_tasks.pipeline import FAST, PipelineConfig

    base = FAST if args.fast else PipelineConfig()
    given = {k: getattr(args, k) for k in ("templates", "flow_templates", "flow_samples",
                                           "started_samples", "start_time", "p1_samples", "rank",
                                           "steps") if getattr(args, k) is not None}
    if args.relax:
        given |= {"relax_top": args.relax_top}
    given |= {"relax_steps": args.relax_steps, "fmax": args.fmax, "exact_size": args.exact_size}
    return replace(base, **given)


def _pipeline_options_used(args: argparse.Namespace) -> list[str]:
    names = ("library", "templates", "flow_templates", "flow_samples", "started_samples",
             "start_time", "p1_samples", "rank")
    used = [n for n in names if getattr(args, n) is not None]
    used += [n for n in ("relax", "exact_size", "fast") if getattr(args, n)]
    return ["--" + n.replace("_", "-") for n in used]


def run(args: argparse.Namespace) -> int:
    from crystalflow.crystal_tasks.prediction import check_candidates
    from crystalflow.errors import InputError

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.from_csv and args.space_group is not None:
        raise InputError("--space-group goes with --composition; with --from-csv use --use-space-group")
    if args.composition and args.use_space_group:
        raise InputError("--use-space-group goes with --from-csv; with --composition give --space-group N")
    if args.wyckoff is not None and args.space_group is None:
        raise InputError("--wyckoff needs --space-group")
    flow_mode = args.p1 or args.space_group is not None or args.use_space_group
    if flow_mode and _pipeline_options_used(args):
        raise InputError(f"{', '.join(_pipeline_options_used(args))} belong to the composition "
                         "pipeline; drop them with --p1 / --space-group / --use-space-group")
    if args.p1 and (args.space_group is not None or args.use_space_group):
        raise InputError("--p1 is the P1 flow alone; it does not take --space-group / --use-space-group")
    if args.candidates is not None and not (args.space_group is not None or args.use_space_group):
        raise InputError("--candidates goes with --space-group / --use-space-group (the composition "
                         "pipeline ranks its own candidates)")
    check_candidates(args.candidates, args.num_samples, args.rank_relax_steps)
    if not flow_mode:
        config = pipeline_config(args)  # InputError on bad settings, before any work
        if args.checkpoint:  # the P1 flow of the pipeline's p1 / fallback candidates
            from crystalflow.pretrained import load_pretrained

            load_pretrained(args.checkpoint, task="csp")
        return _run_pipeline(args, config)
    if args.from_csv:
        return _run_flow_csv(args)
    return _run_flow_composition(args)


def _run_pipeline(args: argparse.Namespace, config) -> int:
    """The composition pipeline for one composition or every CSV row; the inputs are read and
    checked before the output folder is touched; files are written per chunk."""
    from collections import Counter

    from crystalflow.crystal_tasks.composition import atom_types_for
    from crystalflow.outputs import (
        SUMMARY_COLUMNS, prepare_output_dir, safe_stems, warn_failed_checks, write_ranked,
        write_summary_csv,
    )
    from crystalflow.crystal_tasks.pipeline import predict_compositions
    from crystalflow.templates import load_library

    library = load_library(args.library)
    if args.from_csv:
        ids, comps, skipped, rows_total = _csv_compositions(args.from_csv, args.limit)
        stems = safe_stems(ids)
    else:
        from crystalflow.crystal_tasks.pipeline import check_elements

        types = atom_types_for(args.composition, args.num_atoms, args.formula_units)
        comps = [dict(Counter(types))]
        check_elements(comps[0], library, config, allow_unseen=args.allow_unseen_elements)
        stems = [_formula_stem(comps[0])]
        skipped, rows_total = 0, 1
    out = prepare_output_dir(args.out, overwrite=args.overwrite)
    rows: list[dict] = []
    chunk = args.chunk if args.from_csv else 1
    for lo in range(0, len(comps), chunk):
        ranked = predict_compositions(comps[lo:lo + chunk], config=config,
                                      num_outputs=args.num_samples, library=library,
                                      p1_checkpoint=args.checkpoint, seed=args.seed,
                                      progress=True)
        rows += write_ranked(out, stems[lo:lo + chunk], ranked, args.num_samples)
        write_summary_csv(out, rows, SUMMARY_COLUMNS)
    warn_failed_checks(rows, out)
    if args.from_csv:
        print(json.dumps({"rows": rows_total, "skipped": skipped, "written": len(rows),
                          "out": str(out)}))
        return 0
    for r in rows:
        print(f"{out / r['file']}  {r['formula']}  space group {r['space_group']}  "
              f"{r['source']} {r['template']}  E {r['energy_per_atom']} eV/atom")
    print(f"wrote {len(rows)} CIF files and summary.csv to {out}")
    return 0


def _formula_stem(counts: dict[int, int]) -> str:
    """File stem of a composition: its reduced formula, with ``-Z<units>`` for larger cells."""
    from pymatgen.core import Composition, Element

    comp = Composition({Element.from_Z(z).symbol: n for z, n in counts.items()})
    reduced, units = comp.get_reduced_formula_and_factor()
    return reduced if units == 1 else f"{reduced}-Z{int(units)}"


def _csv_compositions(path: str, limit: int | None) -> tuple[list[str], list[dict[int, int]], int, int]:
    """Ids and cell compositions of a CSV's rows; unreadable rows skipped with a warning."""
    from crystalflow.crystals.crystal import structure_from_cif
    from crystalflow.crystals.dataset import read_cif_table
    from crystalflow.errors import InputError

    table = read_cif_table(path)
    if limit is not None:
        table = table.iloc[:limit]
    ids, comps, skipped = [], [], 0
    for mid, cif in zip(table["material_id"], table["cif"]):
        try:
            s = structure_from_cif(cif)
            comp = {int(el.Z): int(round(n)) for el, n in s.composition.items()}
        except InputError as exc:
            print(f"warning: skipping row {mid}: {exc}", file=sys.stderr)
            skipped += 1
            continue
        ids.append(str(mid))
        comps.append(comp)
    if not ids:
        raise InputError(f"no row of {path} could be read")
    return ids, comps, skipped, len(table)


def _run_flow_csv(args: argparse.Namespace) -> int:
    """``--p1`` / ``--use-space-group`` with ``--from-csv``: the flow on every row; the folder
    is checked after the rows are read, before sampling."""
    from crystalflow.cli import print_skipped
    from crystalflow.outputs import warn_failed_checks
    from crystalflow.crystal_tasks.prediction import NoUsableRows, predict_from_csv, predict_from_csv_with_space_group

    common = dict(limit=args.limit, num_samples=args.num_samples, steps=args.steps,
                  method=args.method, checkpoint=args.checkpoint, seed=args.seed,
                  batch_size=args.batch_size, overwrite=args.overwrite)
    try:
        if args.use_space_group:
            res = predict_from_csv_with_space_group(args.from_csv, args.out, symprec=args.symprec,
                                                    workers=args.workers, candidates=args.candidates,
                                                    rank_relax_steps=args.rank_relax_steps, **common)
        else:
            res = predict_from_csv(args.from_csv, args.out, **common)
    except NoUsableRows as exc:
        print_skipped(exc.skipped_rows)
        raise
    print_skipped(res.skipped_rows)
    warn_failed_checks(res.summary, res.out_dir)
    print(json.dumps({"rows": res.rows, "skipped": res.skipped, "written": res.written,
                      "out": str(res.out_dir)}))
    return 0


def _run_flow_composition(args: argparse.Namespace) -> int:
    """``--p1`` / ``--space-group`` with ``--composition``: the flow's samples, checked (against
    the requested group) and written like the pipeline's (``<stem>.cif`` or ``<stem>_<k>.cif``).
    The request (formula, elements the checkpoint knows, size, Wyckoff positions) is checked
    before the output folder is touched."""
    from collections import Counter

    from crystalflow.crystal_tasks.composition import atom_types_for, check_trained_elements
    from crystalflow.outputs import (
        CHECKED_COLUMNS, prepare_output_dir, warn_failed_checks, write_checked, write_summary_csv,
    )
    from crystalflow.crystal_tasks.prediction import (
        check_cell_size, energy_cell, predict, predict_with_space_group, ranking_columns, templates_for,
    )
    from crystalflow.pretrained import load_pretrained

    sg = args.space_group
    types = atom_types_for(args.composition, args.num_atoms, args.formula_units)
    _, ckpt = load_pretrained(args.checkpoint, task="csp" if sg is None else "sgcsp")
    check_trained_elements(types, ckpt.stats, allow_unseen=args.allow_unseen_elements)
    max_atoms = ckpt.stats.get("max_atoms")
    if sg is None:
        check_cell_size(len(types), max_atoms)
    else:
        templates_for(args.composition, sg, wyckoff=args.wyckoff, max_atoms=max_atoms,
                      num_atoms=args.num_atoms, formula_units=args.formula_units)
    out = prepare_output_dir(args.out, overwrite=args.overwrite)
    common = dict(num_atoms=args.num_atoms, formula_units=args.formula_units,
                  num_samples=args.num_samples, steps=args.steps, method=args.method,
                  checkpoint=args.checkpoint, seed=args.seed, allow_unseen=args.allow_unseen_elements)
    if sg is None:
        structures = predict(args.composition, p1=True, **common)
    else:
        structures = predict_with_space_group(args.composition, sg, wyckoff=args.wyckoff,
                                              candidates=args.candidates,
                                              rank_relax_steps=args.rank_relax_steps, **common)
    sized = args.num_atoms is not None or args.formula_units is not None
    counts = Counter(types)
    stem = _formula_stem(counts if sized or sg is None else _reduced(counts))
    rows = write_checked(out, ((stem, k, s, sg) for k, s in enumerate(structures)), args.num_samples)
    columns = CHECKED_COLUMNS
    if args.candidates is not None:  # CHGNet-ranked: the energy each kept sample was ranked by
        extra = ranking_columns(args.rank_relax_steps)
        columns = CHECKED_COLUMNS + extra
        for r, s in zip(rows, structures):
            for key in extra:
                r[key] = energy_cell(s.properties.get(key))
    write_summary_csv(out, rows, columns)
    for r, s in zip(rows, structures):
        energy = f"  E {r['energy_per_atom']} eV/atom" if r.get("energy_per_atom", "") != "" else ""
        print(f"{out / r['file']}  {r['formula']}  volume/atom {s.volume / len(s):.2f} A^3  "
              f"space group {r['space_group']}{energy}" + (f"  ({r['problem']})" if r["problem"] else ""))
    warn_failed_checks(rows, out)
    print(f"wrote {len(rows)} CIF files and summary.csv to {out}")
    return 0


def _reduced(counts: dict[int, int]) -> dict[int, int]:
    """A composition divided by the greatest common divisor of its counts."""
    from math import gcd

    g = 0
    for n in counts.values():
        g = gcd(g, n)
    return {z: n // g for z, n in counts.items()}
