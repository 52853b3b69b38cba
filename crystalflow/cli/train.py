"""``crystalflow train``: fit a CSP flow on a benchmark split or the user's own data.

Data: ``--dataset NAME`` (a benchmark split under ``--data-dir``) or ``--data PATH`` (a folder of
CIF files or a CSV with a ``cif`` column, split into train / validation with a fixed seed).
Launched by ``torchrun --nproc_per_node=N -m crystalflow train ...`` it trains data-parallel
(:mod:`crystalflow.distributed`); rank 0 validates, logs and writes the checkpoints.
"""

from __future__ import annotations

import argparse
import json

from crystalflow.cli._checks import (
    fraction, nonnegative_float, nonnegative_int, positive_float, positive_int,
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
                   help="csp: P1 flow (default); sgcsp: space-group conditioned flow")
    p.add_argument("--space-group", action="store_true",
                   help="shorthand for --task sgcsp (condition on space group and Wyckoff template)")
    p.add_argument("--model", default=None, choices=NETWORKS,
                   help="network (default for csp: the winner on that benchmark, e3nn for perov_5 "
                        "and cspnet otherwise; sgnet for sgcsp)")
    p.add_argument("--hidden", type=positive_int, default=None,
                   help="network width (default: the network's, 128 for cspnet/sgnet, 64 for e3nn)")
    p.add_argument("--layers", type=positive_int, default=None,
                   help="message-passing layers (default: the network's, 4 for cspnet/sgnet, 3 for e3nn)")
    p.add_argument("--max-steps", type=positive_int, default=10000)
    p.add_argument("--max-minutes", type=positive_float, default=None, help="stop after this wall time")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--lr", type=nonnegative_float, default=1e-3)
    p.add_argument("--align-orbits", action="store_true",
                   help="sgcsp: pair each prior sample with the nearest equivalent point of every "
                        "data orbit (shorter paths; no gain measured on MP-20, see BENCHMARKS.md)")
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
                        "--task csp, sgcsp for sgcsp (its lattice chart and network size are kept), "
                        "sgcsp for dng (the trunk; the type head starts fresh)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from crystalflow import distributed

    if args.space_group:
        args.task = "sgcsp"
    if args.task != "csp" and args.data is not None:
        from crystalflow.errors import InputError

        raise InputError("--data trains the P1 CSP flow only (--task csp)")
    from crystalflow.outputs import check_run_dir

    check_run_dir(args.out, resume=args.resume, overwrite=args.overwrite)  # before any data is read
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.task == "dng":
        return run_dng(args)
    if distributed.launched_by_torchrun():
        info = distributed.setup(args.device)
    else:  # one process: exactly the plain loop, on the requested device (default cpu)
        info = distributed.DistInfo(device=torch.device(args.device or "cpu"))
    try:
        code = (run_sgcsp if args.task == "sgcsp" else run_csp)(args, info)
    finally:
        distributed.cleanup()
    return code


def _load_csp_data(args: argparse.Namespace, info, progress: bool):
    """(train, val, dataset name) from ``--dataset`` or ``--data``; rank 0 parses and caches
    first, the other processes then read the cache."""
    from crystalflow import distributed
    from crystalflow.crystals import load_split
    from crystalflow.crystals.dataset import load_user_data, split_dataset

    def load():
        if args.data is not None:
            parts = split_dataset(load_user_data(args.data, progress=progress),
                                  val_fraction=args.val_fraction, seed=args.split_seed)
            return parts["train"], parts["val"], f"user:{args.data}"
        return (load_split(args.dataset, "train", args.data_dir, progress=progress),
                load_split(args.dataset, "val", args.data_dir, progress=progress), args.dataset)

    if not info.is_main:
        distributed.barrier(info)
    loaded = load()
    if info.is_main:
        distributed.barrier(info)
    return loaded


def _init_checkpoint(args: argparse.Namespace, task: str):
    """The ``--init-from`` checkpoint of ``task`` (or None): the run continues from its (EMA)
    weights, network name and size, and lattice chart (so the normalisation the weights were
    trained with is kept)."""
    if not args.init_from:
        return None
    from crystalflow.checkpoint import load_checkpoint
    from crystalflow.errors import InputError
    from crystalflow.pretrained import resolve_checkpoint

    ck = load_checkpoint(resolve_checkpoint(args.init_from, task))
    if ck.task != task:
        raise InputError(f"--init-from needs a {task} checkpoint, got task {ck.task!r}")
    if args.model is not None and args.model != ck.model_name:
        raise InputError(f"--init-from checkpoint holds model {ck.model_name!r}, not --model {args.model}")
    args.model = ck.model_name
    from crystalflow.models import check_size_matches

    check_size_matches(ck.model_config, args.hidden, args.layers)  # never ignored silently
    return ck


def _elements_seen(atom_types, init) -> list[int] | None:
    """Atomic numbers a run trains on, recorded in the checkpoint so that requests for other
    elements can be refused; with ``--init-from`` the union with the start checkpoint's
    (``None``, not recorded, when that checkpoint does not record them)."""
    from crystalflow.composition import trained_elements

    seen = set(atom_types.tolist())
    if init is not None:
        before = trained_elements(init.stats)
        if before is None:
            return None
        seen |= before
    return sorted(seen)


def run_csp(args: argparse.Namespace, info) -> int:
    """Train the P1 CSP flow (one process or one rank of a data-parallel job)."""
    import torch

    if args.lattice_weight is None:
        args.lattice_weight = 0.1
    from crystalflow.csp import CSPConfig, CSPFlow
    from crystalflow.manifolds import LatticeChart
    from crystalflow.models import build_model, default_csp_network, default_size
    from crystalflow.pretrained import make_csp_checkpoint, model_from_checkpoint
    from crystalflow.training import TrainConfig, train
    from crystalflow.validation import csp_validator

    init = _init_checkpoint(args, "csp")  # sets args.model from the checkpoint
    if args.model is None:
        args.model = default_csp_network(args.dataset)
    torch.manual_seed(args.seed)
    progress = not args.no_progress and info.is_main
    train_set, val_set, name = _load_csp_data(args, info, progress)
    if init is not None:
        chart = LatticeChart.from_state_dict(init.stats["lattice_chart"])
        model = model_from_checkpoint(init, info.device).train()
    else:
        chart = LatticeChart.fit(train_set.lattice)
        model = build_model(args.model, default_size(args.model, args.hidden, args.layers)).to(info.device)
    flow = CSPFlow(model, chart, CSPConfig(lattice_weight=args.lattice_weight))
    stats = {"lattice_chart": chart.state_dict(), "max_atoms": int(train_set.num_atoms.max()),
             "dataset": name, "train_size": len(train_set),
             "elements": _elements_seen(train_set.atom_types, init)}
    if init is not None:
        stats["init_from"] = str(args.init_from)
        stats["max_atoms"] = max(stats["max_atoms"], int(init.stats.get("max_atoms", 0)))
    if args.data is not None:
        stats["val_ids"] = list(val_set.material_ids)
    cfg = TrainConfig(max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                      val_every=args.val_every, seed=args.seed, max_minutes=args.max_minutes)
    validate = None
    if info.is_main and args.val_size > 0:
        validate = csp_validator(flow, val_set, size=args.val_size, steps=args.val_steps,
                                 seed=args.seed, device=info.device)
    result = train(
        flow, train_set, cfg, args.out,
        make_checkpoint=lambda w, s: make_csp_checkpoint(flow, args.model, stats, w, s),
        validate=validate, resume=args.resume, progress=progress, dist_info=info,
    )
    if info.is_main:
        print(json.dumps({"steps": result.steps, "seconds": round(result.seconds, 1),
                          "best_val_match_rate": result.best_score, "last": str(result.last_path),
                          "best": str(result.best_path) if result.best_path else None,
                          "processes": info.world_size, "stopped_by": result.stopped_by}))
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


def run_sgcsp(args: argparse.Namespace, info=None) -> int:
    """Train the space-group conditioned flow on symmetrised conventional cells."""
    import torch

    from crystalflow.crystals.dataset import DATASETS, resolve_data_dir
    from crystalflow.crystals.symmetric import SymmetricDataset, load_symmetric_split
    from crystalflow.errors import InputError
    from crystalflow.models import build_model, default_size
    from crystalflow.pretrained import make_sgcsp_checkpoint
    from crystalflow.manifolds import LatticeChart
    from crystalflow.sgcsp import SGCSPConfig, SGCSPFlow
    from crystalflow.symmetry import family_lattice_chart
    from crystalflow.training import TrainConfig, train
    from crystalflow.validation import sgcsp_validator

    model_name = args.model or "sgnet"
    if model_name != "sgnet":
        raise InputError("--task sgcsp needs --model sgnet")
    init = _init_checkpoint(args, "sgcsp")
    from crystalflow.distributed import DistInfo

    info = info or DistInfo()
    if info.device.type != "cpu" or info.distributed:
        raise InputError("--task sgcsp trains in one process on the CPU for now")
    torch.manual_seed(args.seed)
    progress = not args.no_progress
    train_set = load_symmetric_split(args.dataset, "train", args.data_dir, progress=progress)
    if DATASETS[args.dataset]["train"] == DATASETS[args.dataset]["val"]:
        val_set = load_symmetric_split(args.dataset, "val", args.data_dir, progress=progress)
    else:  # only the first rows are needed for validation: analyse (and cache) just those
        root = resolve_data_dir(args.data_dir) / args.dataset
        val_set = SymmetricDataset.from_csv(root / DATASETS[args.dataset]["val"],
                                            limit=max(args.val_size, 500), progress=progress)
    if init is not None:
        from crystalflow.pretrained import model_from_checkpoint

        chart = LatticeChart.from_state_dict(init.stats["lattice_chart"])
        model = model_from_checkpoint(init).train()
    else:
        chart = family_lattice_chart(train_set.lattice, train_set.space_groups)
        model = build_model(model_name, default_size(model_name, args.hidden, args.layers))
    lattice_weight = 0.5 if args.lattice_weight is None else args.lattice_weight
    flow = SGCSPFlow(model, chart, SGCSPConfig(lattice_weight=lattice_weight,
                                               align_orbits=args.align_orbits))
    stats = {"lattice_chart": chart.state_dict(), "max_atoms": int(train_set.num_atoms.max()),
             "dataset": args.dataset, "train_size": len(train_set), "cell": "conventional",
             "symprec": 0.1, "elements": _elements_seen(train_set.atom_types, init)}
    cfg = TrainConfig(max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                      val_every=args.val_every, seed=args.seed, max_minutes=args.max_minutes)
    validate = sgcsp_validator(flow, val_set, size=args.val_size, steps=args.val_steps,
                               seed=args.seed) if args.val_size > 0 else None
    result = train(
        flow, train_set, cfg, args.out,
        make_checkpoint=lambda w, s: make_sgcsp_checkpoint(flow, model_name, stats, w, s),
        validate=validate, resume=args.resume, progress=progress,
    )
    print(json.dumps({"steps": result.steps, "seconds": round(result.seconds, 1),
                      "best_val_match_rate": result.best_score, "last": str(result.last_path),
                      "best": str(result.best_path) if result.best_path else None,
                      "stopped_by": result.stopped_by}))
    return finish(result.stopped_by, result.steps, result.last_path)


def run_dng(args: argparse.Namespace) -> int:
    """Train the de-novo generation flow (:mod:`crystalflow.dng`) on symmetrised conventional cells."""
    import torch

    from crystalflow.checkpoint import load_checkpoint
    from crystalflow.crystals.symmetric import load_symmetric_split
    from crystalflow.dng import NUM_TYPES, DNGConfig, DNGFlow, dng_stats
    from crystalflow.errors import InputError
    from crystalflow.models import build_model, check_size_matches, default_size
    from crystalflow.pretrained import make_dng_checkpoint, resolve_checkpoint
    from crystalflow.symmetry import family_lattice_chart
    from crystalflow.training import TrainConfig, train

    model_name = args.model or "dngnet"
    if model_name != "dngnet":
        raise InputError("--task dng needs --model dngnet")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    progress = not args.no_progress
    train_set = load_symmetric_split(args.dataset, "train", args.data_dir, progress=progress)
    chart = family_lattice_chart(train_set.lattice, train_set.space_groups)
    allowed = torch.zeros(NUM_TYPES, dtype=torch.bool)
    allowed[train_set.atom_types.unique()] = True
    init_note = None
    if getattr(args, "init_from", None):
        ck = load_checkpoint(resolve_checkpoint(args.init_from, "sgcsp"))
        if ck.task != "sgcsp":
            raise InputError(f"--init-from needs an sgcsp checkpoint, got task {ck.task!r}")
        check_size_matches(ck.model_config, args.hidden, args.layers)  # the trunk is the checkpoint's
        model = build_model(model_name, dict(ck.model_config))  # DNGNetConfig is SGNet's
        missing, unexpected = model.load_state_dict(ck.weights, strict=False)
        if unexpected or any(not k.startswith("type_head") for k in missing):
            raise InputError(f"--init-from weights do not fit: missing {missing}, unexpected {unexpected}")
        init_note = str(args.init_from)
    else:
        model = build_model(model_name, default_size(model_name, args.hidden, args.layers))
    lattice_weight = 0.5 if args.lattice_weight is None else args.lattice_weight
    flow = DNGFlow(model, chart, allowed, DNGConfig(lattice_weight=lattice_weight))
    stats = dng_stats(train_set, chart, allowed, args.dataset)
    if init_note:
        stats["init_from"] = init_note
    cfg = TrainConfig(max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                      val_every=args.val_every, seed=args.seed, max_minutes=args.max_minutes)
    result = train(flow, train_set, cfg, args.out,
                   make_checkpoint=lambda w, s: make_dng_checkpoint(flow, model_name, stats, w, s),
                   validate=None, resume=args.resume, progress=progress)
    print(json.dumps({"steps": result.steps, "seconds": round(result.seconds, 1), "last": str(result.last_path),
                      "stopped_by": result.stopped_by}))
    return finish(result.stopped_by, result.steps, result.last_path)
