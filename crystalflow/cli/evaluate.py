"""``crystalflow evaluate``: CSP, de-novo-generation and stability metrics of generated crystals.

Sub-commands: ``csp`` (match rate / RMSE against a reference split), ``dng`` (validity,
coverage, property distributions, symmetry, uniqueness / novelty), ``stability`` (CHGNet
relaxation, energy above a CHGNet convex hull, S.U.N.) and ``build-hull`` (the cached reference
hull). Progress bars go to stderr; ``--json`` prints exactly one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from crystalflow.cli._checks import nonnegative_float, nonnegative_int, positive_float, positive_int
from crystalflow.errors import InputError

__all__ = ["register"]


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _json_line(payload: dict[str, Any]) -> str:
    """One JSON line; non-finite floats become ``null``."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(payload), separators=(",", ":"))


def _print_table(title: str, rows: dict[str, Any]) -> None:
    print(title)
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        if isinstance(value, float):
            text = f"{value:.4f}"
        elif value is None:
            text = "n/a"
        else:
            text = str(value)
        print(f"  {key:<{width}}  {text}")


# --------------------------------------------------------------------------------------- csp
def run_csp(args: argparse.Namespace) -> int:
    """``crystalflow evaluate csp``."""
    from crystalflow.metrics._parallel import parallel_map
    from crystalflow.metrics.csp import aggregate_csp_scores, score_reference_task
    from crystalflow.metrics.io import group_csp_predictions, read_reference_table

    table = read_reference_table(args.reference, args.limit)
    if table.empty:
        raise InputError(f"reference file {args.reference} has no rows")
    ids = table["material_id"].tolist()
    groups = group_csp_predictions(args.predictions, ids)
    if not any(groups.values()):
        raise InputError(
            f"no file in {args.predictions} is named after a reference id "
            "(expected <material_id>.cif or <material_id>_<k>.cif)"
        )
    symprec = args.symprec if args.space_group else None
    tasks = [(cif, [str(p) for p in groups[i]], symprec) for i, cif in zip(ids, table["cif"])]
    results = parallel_map(
        score_reference_task, tasks, workers=args.workers, progress=not args.no_progress, desc="csp"
    )
    bad_refs = [(i, r) for i, r in zip(ids, results) if isinstance(r, str)]
    for i, reason in bad_refs:
        _warn(f"reference {i}: {reason} (row skipped, not counted)")
    if len(bad_refs) == len(ids):
        raise InputError(f"no reference row of {args.reference} is readable")
    kept = [(i, r) for i, r in zip(ids, results) if not isinstance(r, str)]
    ids, results = [i for i, _ in kept], [r for _, r in kept]
    unreadable = [b for _, bad, _ in results for b in bad]
    for path, reason in unreadable:
        _warn(f"{path}: {reason} (counted as a miss)")
    missing = sum(1 for i in ids if not groups[i])
    if missing:
        _warn(f"{missing} of {len(ids)} references have no prediction file (counted as misses)")
    max_k = max(len(g) for g in groups.values())
    metrics = aggregate_csp_scores([s for s, _, _ in results], max_k)
    rows = metrics.to_dict()
    if args.space_group:
        # first prediction of each reference has the reference's spglib group (missing: no)
        rows["space_group_kept"] = sum(bool(same) for _, _, same in results) / len(ids)
    if args.json:
        print(_json_line(rows))
    else:
        rows["unreadable_files"] = len(unreadable)
        rows["unreadable_references"] = len(bad_refs)
        _print_table(
            f"CSP metrics ({Path(args.reference).name}; a match needs a valid sample)", rows
        )
    return 0


def _add_csp(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "csp",
        help="CSP match rate and RMSE against a reference split",
        description=(
            "Match rate / RMSE with StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3); "
            "only valid samples count (CDVAE), the unfiltered rate is shown beside it."
        ),
    )
    p.add_argument("--predictions", required=True, type=Path,
                   help="directory of <material_id>.cif and/or <material_id>_<k>.cif files")
    p.add_argument("--reference", required=True, type=Path,
                   help="reference CSV in the CDVAE layout (material_id, cif; gzip ok)")
    p.add_argument("--limit", type=positive_int, default=None, help="first N references only")
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.add_argument("--space-group", action="store_true",
                   help="also report space_group_kept: the share of references whose (first) "
                        "prediction has the reference's spglib space group (for --use-space-group runs)")
    p.add_argument("--symprec", type=positive_float, default=0.1, help="spglib tolerance of --space-group")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run_csp)


# --------------------------------------------------------------------------------------- dng
def _load_samples(directory: Path, workers: int, progress: bool):
    import warnings

    from crystalflow.metrics.io import UnreadableCIFWarning, load_sample_dir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreadableCIFWarning)
        samples = load_sample_dir(directory, workers=workers, progress=progress)
    for name, reason in samples.failed:
        _warn(f"{directory / name}: {reason} (counted as invalid)")
    if not samples.structures:
        _warn(f"no readable structure in {directory}")
    return samples


def _use_agg() -> None:
    import matplotlib

    matplotlib.use("Agg")


def _prepare_plots(plots: Path | None, samples: Path, overwrite: bool) -> Path | None:
    """The ``--plots`` folder, checked before any work like every output folder (new or empty,
    or ``--overwrite``); it may not be the samples folder, whose CIFs ``--overwrite`` would clear."""
    from crystalflow.outputs import prepare_output_dir

    if plots is None:
        return None
    if plots.expanduser().resolve() == samples.expanduser().resolve():
        raise InputError(f"--plots {plots} is the samples folder; give a folder of its own")
    return prepare_output_dir(plots, overwrite=overwrite)


def _check_samples_dir(samples: Path) -> None:
    """The samples folder exists (checked before outputs are placed in or beside it)."""
    if not samples.is_dir():
        raise InputError(f"sample directory {samples} does not exist")


def run_dng(args: argparse.Namespace) -> int:
    """``crystalflow evaluate dng``."""
    from crystalflow.metrics.dng import dataset_from_path, dng_metrics
    from crystalflow.metrics.io import load_reference_csv
    from crystalflow.metrics.reference import reference_profile

    progress = not args.no_progress
    dataset = args.dataset or dataset_from_path(args.reference) or "mp_20"
    _check_samples_dir(args.samples)
    plots = _prepare_plots(args.plots, args.samples, args.overwrite)
    samples = _load_samples(args.samples, args.workers, progress)
    reference = reference_profile(
        args.reference, limit=args.reference_limit, with_fingerprints=not args.no_coverage,
        workers=args.workers, progress=progress, use_cache=not args.no_cache,
    )
    train = train_templates = None
    if args.train is not None:
        train_templates = reference_profile(
            args.train, workers=args.workers, progress=progress, use_cache=not args.no_cache
        ).templates.tolist()
        formulas = {s.composition.reduced_formula for s in samples.structures}
        train = list(load_reference_csv(args.train, formulas=formulas, workers=args.workers, progress=progress).structures)
    metrics = dng_metrics(
        list(samples.structures), reference, train=train, train_templates=train_templates, dataset=dataset,
        num_unreadable=len(samples.failed), with_coverage=not args.no_coverage, workers=args.workers,
        progress=progress,
    )
    if plots is not None:
        _dng_plots(plots, samples.structures, reference)
    if args.json:
        print(_json_line(metrics.to_dict()))
    else:
        _print_table(f"DNG metrics ({len(samples.structures)} readable samples vs {Path(args.reference).name})",
                     metrics.to_dict())
        if plots is not None:
            print(f"plots written to {plots}")
    return 0


def _dng_plots(directory: Path, structures, reference) -> None:
    _use_agg()
    from crystalflow.metrics.plots import (
        plot_density_distribution,
        plot_lattice_distributions,
        plot_spacegroup_distribution,
    )
    from crystalflow.metrics.reference import profile_structures

    if not structures:
        return
    prof = profile_structures(list(structures), progress=False)
    plot_spacegroup_distribution(prof.spacegroups, reference.spacegroups, directory / "spacegroups.png")
    plot_lattice_distributions(prof.lattice, reference.lattice, directory / "lattice.png")
    plot_density_distribution(prof.densities, reference.densities, directory / "density.png")
    import matplotlib.pyplot as plt

    plt.close("all")
    from crystalflow.outputs import record_outputs

    record_outputs(directory, ["spacegroups.png", "lattice.png", "density.png"])


def _add_dng(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dng", help="de-novo generation metrics (validity, coverage, Wasserstein, d_sg, novelty)",
        description="CDVAE DNG metrics plus SymmCD symmetry metrics and StructureMatcher uniqueness/novelty.",
    )
    p.add_argument("--samples", required=True, type=Path, help="directory of generated .cif files")
    p.add_argument("--reference", required=True, type=Path, help="reference split CSV (e.g. mp_20/test.csv.gz)")
    p.add_argument("--train", type=Path, default=None, help="training split CSV, for novelty")
    p.add_argument("--dataset", choices=("mp_20", "carbon_24", "perov_5"), default=None,
                   help="coverage cutoffs (default: guessed from --reference, else mp_20)")
    p.add_argument("--reference-limit", type=positive_int, default=None, help="first N reference rows only")
    p.add_argument("--no-coverage", action="store_true", help="skip the (slow) CrystalNN coverage metrics")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the reference cache")
    p.add_argument("--plots", type=Path, default=None,
                   help="write PNG plots to this directory (new or empty, see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the plots a previous run wrote to --plots")
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run_dng)


# --------------------------------------------------------------------------------- stability
def run_stability(args: argparse.Namespace) -> int:
    """``crystalflow evaluate stability``."""
    from crystalflow.metrics.hull import load_reference_hull
    from crystalflow.metrics.io import load_reference_csv
    from crystalflow.metrics.stability import (
        StabilityRecord,
        evaluate_stability,
        stability_metrics,
        write_stability_csv,
    )
    from crystalflow.outputs import MANIFEST, prepare_output_file, record_outputs

    progress = not args.no_progress
    _check_samples_dir(args.samples)
    out = prepare_output_file(args.out or (args.samples / "stability.csv"), overwrite=args.overwrite)
    plots = _prepare_plots(args.plots, args.samples, args.overwrite)
    hull = load_reference_hull(args.hull, data_dir=args.data_dir)
    samples = _load_samples(args.samples, args.workers, progress)
    train = None
    if args.train is not None:
        formulas = {s.composition.reduced_formula for s in samples.structures}
        train = list(load_reference_csv(args.train, formulas=formulas, workers=args.workers, progress=progress).structures)
    result = evaluate_stability(
        list(samples.structures), hull, names=list(samples.names), train=train,
        relax_steps=args.relax_steps, fmax=args.fmax, workers=args.workers, progress=progress,
        stable_cutoff=args.stable_cutoff, metastable_cutoff=args.metastable_cutoff, hull_floor=args.hull_floor,
    )
    nan = float("nan")
    failed = [
        StabilityRecord(Path(name).stem, "", 0, nan, nan, nan, "", 0, False, error=f"unreadable CIF: {reason}")
        for name, reason in samples.failed
    ]
    records = list(result.records) + failed
    metrics = stability_metrics(records, hull_description=hull.description,
                                seconds_per_structure=result.metrics.seconds_per_structure,
                                stable_cutoff=args.stable_cutoff, metastable_cutoff=args.metastable_cutoff,
                                hull_floor=args.hull_floor)
    write_stability_csv(records, out)
    if (out.parent / MANIFEST).is_file():  # a crystalflow output folder: --overwrite clears it too
        record_outputs(out.parent, [out.name])
    if plots is not None:
        _use_agg()
        from crystalflow.metrics.plots import plot_ehull_histogram

        plot_ehull_histogram([r.e_above_hull for r in records], plots / "ehull.png")
        record_outputs(plots, ["ehull.png"])
    payload = metrics.to_dict() | {"csv": str(out), "num_unreadable": len(failed)}
    if args.json:
        print(_json_line(payload))
    else:
        _print_table(f"Stability of {len(records)} samples (CHGNet relaxation, {args.relax_steps} steps)", payload)
        print(f"note: E_hull is relative to a CHGNet hull, not a DFT one: {hull.description}")
    return 0


def _add_stability(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stability", help="CHGNet relaxation, energy above a CHGNet hull, S.U.N. rates",
        description=(
            "Relax each sample with CHGNet, compute E_hull against the cached CHGNet reference hull "
            "(NOT a DFT hull) and report the fractions stable (E_hull <= --stable-cutoff, default 0, "
            "plus 1e-6 tolerance: on or below the hull) and metastable (E_hull < --metastable-cutoff, "
            "default 0.1 eV/atom); with --train also unique (no earlier sample matches), novel (no "
            "training structure matches; StructureMatcher defaults) and S.U.N. rates "
            "(sun_rate: stable, msun_rate: metastable; all over every sample). Samples more than "
            "--hull-floor below the hull (likely gaps of the reference hull) are counted apart: "
            "frac_below_floor, and sun_floor_rate counts only stable samples above that floor."
        ),
    )
    p.add_argument("--stable-cutoff", type=nonnegative_float, default=0.0,
                   help="E_hull (eV/atom) at or below which a sample is stable (default 0: on the hull)")
    p.add_argument("--metastable-cutoff", type=positive_float, default=0.1,
                   help="E_hull (eV/atom) below which a sample is metastable (default 0.1)")
    p.add_argument("--hull-floor", type=nonnegative_float, default=0.1,
                   help="E_hull (eV/atom) below minus this is counted apart as a likely gap of the "
                        "reference hull (frac_below_floor; sun_floor_rate excludes it; default 0.1)")
    p.add_argument("--samples", required=True, type=Path, help="directory of .cif files")
    p.add_argument("--relax-steps", type=nonnegative_int, default=500, help="CHGNet FIRE steps (0: no relaxation)")
    p.add_argument("--fmax", type=positive_float, default=0.1, help="force convergence threshold (eV/A)")
    p.add_argument("--hull", type=Path, default=None, help="hull file (default: the cached MP-20 CHGNet hull)")
    p.add_argument("--data-dir", type=Path, default=None, help="MP-20 directory the default hull is keyed on")
    p.add_argument("--train", type=Path, default=None, help="training split CSV, for S.U.N. novelty")
    p.add_argument("--out", type=Path, default=None,
                   help="per-structure CSV (default: SAMPLES/stability.csv); an existing file needs --overwrite")
    p.add_argument("--plots", type=Path, default=None,
                   help="write the E_hull histogram PNG to this directory (new or empty, see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the CSV and plots a previous run wrote")
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run_stability)


# -------------------------------------------------------------------------------- build-hull
def run_build_hull(args: argparse.Namespace) -> int:
    """``crystalflow evaluate build-hull``."""
    from crystalflow.metrics.hull_build import build_reference_hull

    path = build_reference_hull(
        args.data_dir, out_dir=args.out_dir, batch_size=args.batch_size, limit=args.limit,
        progress=not args.no_progress, log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(path)
    return 0


def _add_build_hull(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-hull", help="(re)build the cached CHGNet reference hull of MP-20",
        description=(
            "CHGNet static energies of MP-20 train+val+test plus CHGNet-relaxed elemental references, "
            "saved to crystalflow/data/hull/ under a key of the inputs. Resumable. About 30 ms per structure on one core."
        ),
    )
    p.add_argument("--data-dir", type=Path, default=None, help="directory with train/val/test.csv.gz")
    p.add_argument("--out-dir", type=Path, default=None, help="output directory (default crystalflow/data/hull)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="CHGNet batch size")
    p.add_argument("--limit", type=positive_int, default=None, help="first N rows per split (testing)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run_build_hull)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` and its sub-commands to the top-level parser."""
    parser = subparsers.add_parser(
        "evaluate", help="metrics of predicted / generated crystals",
        description="Evaluate crystal structure prediction, generation and stability.",
    )
    sub = parser.add_subparsers(dest="evaluate_command", metavar="TASK")
    _add_csp(sub)
    _add_dng(sub)
    _add_stability(sub)
    _add_build_hull(sub)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
