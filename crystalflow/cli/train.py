"""``crystalflow train``: fit a crystal flow (``--task csp``, ``sgcsp`` or ``dng``).

Data: ``--dataset NAME`` (a benchmark split under ``--data-dir``) or, for csp, ``--data PATH`` (a
folder of CIF files or a CSV with a ``cif`` column, split into train / validation with a fixed
seed). Every task runs through the shared entry :func:`crystalflow.task_training.train_task`:
on any ``--device``, and launched by ``torchrun --nproc_per_node=N -m crystalflow train ...``
data-parallel (:mod:`crystalflow.distributed`); rank 0 validates, logs and writes the checkpoints.
"""

from __future__ import annotations

import argparse
import json

from crystalflow.cli._checks import (
    fraction, nonnegative_float, nonnegative_int, positive_float, positive_int, probability,
)

#: the networks ``--model`` accepts: the keys of :data:`crystalflow.models.MODELS` (listed here so
#: the parser is built without importing torch; a test keeps the two equal)
NETWORKS = ("cspnet", "dngnet", "e3nn", "sgnet")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a flow on a dataset",
                       description="Train a CSP flow; writes OUT/last.pt, OUT/best.pt, OUT/log.csv.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", choices=["perov_5", "carbon_24", "mp_20"], help="a benchmark")
    src.add_argument("--data", default=None, metavar="PATH",
                     help="your own crystals: a folder of .cif files or a CSV with a 'cif' column "
                          "(split into train/validation with --split-seed)")
    p.add_argument("--data-dir", default=None, help="benchmark root (default: $CRYSTALFLOW_DATA)")
    p.add_argument("--val-fraction", type=fraction, default=0.1,
                   help="--data: share of crystals held out for validation")
    p.add_argument("--split-seed", type=int, default=0, help="--data: seed of the train/val split")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--task", default="csp", choices=["csp", "sgcsp", "dng"],
                   help="csp: P1 flow (default); sgcsp: space-group conditioned flow; dng: de-novo "
                        "generation (validation: held-out loss)")
    p.add_argument("--space-group", action="store_true",
                   help="shorthand for --task sgcsp (condition on space group and Wyckoff template)")
    p.add_argument("--model", default=None, choices=NETWORKS,
                   help="network (default for csp: the winner on that benchmark, e3nn for perov_5 "
                        "and cspnet otherwise; sgnet for sgcsp)")
    p.add_argument("--hidden", type=positive_int, default=None,
                   help="network width (default: the network's, 128 for cspnet/sgnet, 64 for e3nn)")
    p.add_argument("--layers", type=positive_int, default=None,
                   help="message-passing layers (default: the network's, 4 for cspnet/sgnet, 3 for e3nn); "
                        "with --task sgcsp --init-from, more than the checkpoint's grows it by identity "
                        "layers (the same function at the start)")
    p.add_argument("--max-steps", type=positive_int, default=10000)
    p.add_argument("--max-minutes", type=positive_float, default=None, help="stop after this wall time")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--lr", type=nonnegative_float, default=1e-3)
    p.add_argument("--align-orbits", action="store_true",
                   help="sgcsp: pair each prior sample with the nearest equivalent point of every "
                        "data orbit (shorter paths; no gain measured on MP-20, see BENCHMARKS.md)")
    p.add_argument("--self-condition", action="store_true",
                   help="sgcsp: a self-conditioned network (it also reads its previous estimate of the "
                        "crystal); added with zero-started inputs to an --init-from network without it")
    p.add_argument("--t-late-fraction", type=probability, default=0.0,
                   help="sgcsp: fraction of training times drawn from U(--t-late-min, 1) instead of U(0, 1)")
    p.add_argument("--t-late-min", type=fraction, default=0.8)
    p.add_argument("--low-symmetry-repeats", type=positive_int, default=1, metavar="K",
                   help="sgcsp / dng: each orthorhombic, monoclinic or triclinic training crystal appears K "
                        "times per epoch (default 1)")
    p.add_argument("--lattice-weight", type=nonnegative_float, default=None,
                   help="lattice loss weight (default 0.1 for csp, 0.5 for sgcsp)")
    p.add_argument("--val-every", type=positive_int, default=500)
    p.add_argument("--val-size", type=nonnegative_int, default=200, help="validation crystals per check")
    p.add_argument("--val-steps", type=positive_int, default=50, help="ODE steps for validation samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--device", default=None,
                   help="cpu, cuda or cuda:K (default: cpu; under torchrun cuda:LOCAL_RANK if available)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="start again in a used OUT (its last.pt, best.pt and log.csv are replaced)")
    p.add_argument("--init-from", default=None,
                   help="start from a checkpoint's weights (path or bundled name): a csp checkpoint for "
                        "--task csp, sgcsp for sgcsp (its lattice chart and width are kept; depth can grow), "
                        "sgcsp for dng (the trunk; the type head starts fresh) or dng for dng (continued whole)")
    p.add_argument("--train-on-val", action="store_true",
                   help="--task sgcsp/dng on mp_20: also train on val.csv after its first 1,000 rows, "
                        "which stay held out for validation and selection (test is never used)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train the task ``--task`` through the shared entry (:func:`crystalflow.task_training.train_task`)."""
    from crystalflow.crystal_tasks.training import CrystalTrainOptions
    from crystalflow.outputs import check_run_dir
    from crystalflow.pretrained import get_task
    from crystalflow.task_training import RunSettings, train_task
    from crystalflow.training import TrainConfig

    if args.space_group:
        args.task = "sgcsp"
    options = CrystalTrainOptions(
        dataset=args.dataset, data=args.data, data_dir=args.data_dir, val_fraction=args.val_fraction,
        split_seed=args.split_seed, model=args.model, hidden=args.hidden, layers=args.layers,
        lattice_weight=args.lattice_weight, align_orbits=args.align_orbits,
        self_condition=args.self_condition, t_late_fraction=args.t_late_fraction,
        t_late_min=args.t_late_min, val_size=args.val_size,
        val_steps=args.val_steps, seed=args.seed, init_from=args.init_from,
        train_on_val=args.train_on_val, low_symmetry_repeats=args.low_symmetry_repeats)
    task = get_task(args.task)
    task.training.check_options(options)  # e.g. --data with --task sgcsp, before --out is touched
    check_run_dir(args.out, resume=args.resume, overwrite=args.overwrite)  # before any data is read
    config = TrainConfig(max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                         val_every=args.val_every, seed=args.seed, max_minutes=args.max_minutes)
    settings = RunSettings(out=args.out, config=config, device=args.device, threads=args.threads,
                           resume=args.resume, progress=not args.no_progress)
    result, _, info = train_task(task, options, settings)
    if info.is_main:
        print(json.dumps({"steps": result.steps, "seconds": round(result.seconds, 1),
                          task.training.score_key: result.best_score, "last": str(result.last_path),
                          "best": str(result.best_path) if result.best_path else None,
                          "task": args.task, "processes": info.world_size,
                          "stopped_by": result.stopped_by}))
    return finish(result.stopped_by, result.steps, result.last_path, quiet=not info.is_main)


def finish(stopped_by: str | None, steps: int, last, quiet: bool = False) -> int:
    """Exit status of a training command: 0 when it ran to the end; after SIGINT / SIGTERM a
    note on stderr (the run is resumable) and the shell's 128 + signal number."""
    if stopped_by is None:
        return 0
    import signal
    import sys

    if not quiet:
        print(f"stopped by {stopped_by} at step {steps}; checkpoint {last}; continue with --resume",
              file=sys.stderr)
    return 128 + int(signal.Signals[stopped_by])
