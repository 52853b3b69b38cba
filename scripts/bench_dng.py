"""Benchmark de-novo generation with a DNG checkpoint.

Space-group mode (the issue's done-when check)::

    python scripts/bench_dng.py sg --space-group 225 --num 256 --out runs/dng/bench_225

generates ``--num`` structures of the group and reports the fraction whose spglib group
(symprec 0.1) is the requested one, structural validity (all distances >= 0.5 A), SMACT validity.

Unconditional MP-20 DNG::

    python scripts/bench_dng.py mp20 --num 1000 --out runs/dng/bench_mp20 \
        --reference ../shared/data/mp_20/test.csv.gz --coverage-reference runs/dng/mp20_test_subset1000_seed0.csv

samples the space group too, writes the *primitive* cells (pymatgen ``get_primitive_structure``; the
same crystals as the conventional cells, fewer atoms to fingerprint) as CIFs and evaluates them with
:func:`crystalflow.metrics.dng.dng_metrics`: validity, Wasserstein distances of density and number of
elements, d_sg and the fraction above P1 against the full ``--reference`` split, and CDVAE coverage
against the fingerprints of ``--coverage-reference`` (a fixed random subset, to keep the CrystalNN
cost inside the evaluation budget).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch


def _generate(args, space_group):
    from crystalflow.crystal_tasks.generation import _load, generate_crystals
    from crystalflow.crystal_tasks.geometry import load_geometry

    flow, dist = _load(args.checkpoint, "cpu")
    if args.type_temperature is not None:
        import dataclasses

        flow.config = dataclasses.replace(flow.config, type_temperature=args.type_temperature)
    t0 = time.time()
    res = generate_crystals(flow, dist, args.num, space_group=space_group, steps=args.steps, seed=args.seed,
                            batch_size=args.batch_size, progress=not args.no_progress, retries=args.retries,
                            couple_elements=not args.independent_types,
                            geometry=load_geometry(flow, args.geometry, "cpu"))
    return res, time.time() - t0


def run_sg(args) -> dict:
    from crystalflow.crystal_tasks.generation import write_generated
    from crystalflow.metrics.dng import validity_flags

    res, secs = _generate(args, args.space_group)
    rows = write_generated(res.crystals, args.out)
    structures = [c.to_structure() for c in res.crystals]
    flags = validity_flags(structures, progress=False)
    n = len(rows)
    return {
        "mode": "space_group", "space_group": args.space_group, "num": n, "steps": args.steps,
        "type_temperature": args.type_temperature, "retries": args.retries, "geometry": args.geometry,
        "coupled_types": not args.independent_types, "resampled": res.resampled,
        "seed": args.seed, "sampling_seconds": round(secs, 1),
        "frac_space_group": sum(r["space_group"] == args.space_group for r in rows) / n,
        "struct_valid": sum(a for a, _ in flags) / n, "comp_valid": sum(b for _, b in flags) / n,
        "valid": sum(a and b for a, b in flags) / n,
    }


def run_mp20(args) -> dict:
    from crystalflow.crystals.crystal import write_text_atomic
    from crystalflow.metrics.dng import dng_metrics
    from crystalflow.metrics.reference import ReferenceProfile, reference_profile

    res, secs = _generate(args, None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prims = []
    for k, c in enumerate(res.crystals):
        s = c.to_structure()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                p = s.get_primitive_structure(tolerance=0.25)
            except Exception:
                p = s
        prims.append(p)
        write_text_atomic(out / f"{k:04d}_{p.composition.reduced_formula}.cif", p.to(fmt="cif"))
    t1 = time.time()
    full = reference_profile(args.reference, progress=False)
    ref = full
    if args.coverage_reference:
        sub = reference_profile(args.coverage_reference, with_fingerprints=True, progress=False)
        ref = ReferenceProfile(densities=full.densities, num_elements=full.num_elements,
                               spacegroups=full.spacegroups, templates=full.templates,
                               lattice=full.lattice, fingerprints=sub.fingerprints)
    m = dng_metrics(prims, ref, dataset="mp_20", with_coverage=bool(args.coverage_reference),
                    with_novelty=False, workers=args.workers, progress=not args.no_progress)
    return {"mode": "mp20_unconditional", "num": len(prims), "steps": args.steps, "seed": args.seed,
            "type_temperature": args.type_temperature,
            "retries": args.retries, "coupled_types": not args.independent_types, "geometry": args.geometry,
            "resampled": res.resampled, "sampling_seconds": round(secs, 1), "eval_seconds": round(time.time() - t1, 1),
            "coverage_reference_size": (len(sub.densities) if args.coverage_reference else None),
            **m.to_dict()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["sg", "mp20"])
    ap.add_argument("--checkpoint", default=None, help="default: bundled dng_mp_20.pt")
    ap.add_argument("--space-group", type=int, default=225)
    ap.add_argument("--num", type=int, default=256)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reference", default=None)
    ap.add_argument("--coverage-reference", default=None)
    ap.add_argument("--type-temperature", type=float, default=None, help="override the checkpoint's")
    ap.add_argument("--retries", type=int, default=3,
                    help="re-sampling rounds for structures with atoms < 0.5 A apart (0: the raw model)")
    ap.add_argument("--geometry", default="auto",
                    help="auto (the checkpoint's choice), dng (the DNG flow's own) or an sgcsp checkpoint")
    ap.add_argument("--independent-types", action="store_true",
                    help="draw every orbit's element on its own (no element-count coupling)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = run_sg(args) if args.mode == "sg" else run_mp20(args)
    print(json.dumps(result))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
