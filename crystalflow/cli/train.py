"""``crystalflow train``: fit a CSP flow on a benchmark split and write checkpoints."""

from __future__ import annotations

import argparse
import json

import torch


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a flow on a dataset",
                       description="Train a CSP flow; writes OUT/last.pt, OUT/best.pt, OUT/log.csv.")
    p.add_argument("--dataset", required=True, choices=["perov_5", "carbon_24", "mp_20"])
    p.add_argument("--data-dir", default=None, help="benchmark root (default: $CRYSTALFLOW_DATA)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--task", default="csp", choices=["csp", "sgcsp"],
                   help="csp: P1 flow (default); sgcsp: space-group conditioned flow")
    p.add_argument("--space-group", action="store_true",
                   help="shorthand for --task sgcsp (condition on space group and Wyckoff template)")
    p.add_argument("--model", default=None, choices=["cspnet", "sgnet"],
                   help="network (default: cspnet for csp, sgnet for sgcsp)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=10000)
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this wall time")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lattice-weight", type=float, default=None,
                   help="lattice loss weight (default 0.1 for csp, 0.5 for sgcsp)")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--val-size", type=int, default=200, help="validation crystals per check")
    p.add_argument("--val-steps", type=int, default=50, help="ODE steps for validation samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.space_group:
        args.task = "sgcsp"
    if args.task == "sgcsp":
        return run_sgcsp(args)
    if args.model is None:
        args.model = "cspnet"
    if args.lattice_weight is None:
        args.lattice_weight = 0.1
    from crystalflow.crystals import load_split
    from crystalflow.csp import CSPConfig, CSPFlow
    from crystalflow.manifolds import LatticeChart
    from crystalflow.models import build_model
    from crystalflow.pretrained import make_csp_checkpoint
    from crystalflow.training import TrainConfig, train
    from crystalflow.validation import csp_validator

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    progress = not args.no_progress
    train_set = load_split(args.dataset, "train", args.data_dir, progress=progress)
    val_set = load_split(args.dataset, "val", args.data_dir, progress=progress)
    chart = LatticeChart.fit(train_set.lattice)
    model = build_model(args.model, {"hidden": args.hidden, "layers": args.layers})
    flow = CSPFlow(model, chart, CSPConfig(lattice_weight=args.lattice_weight))
    stats = {"lattice_chart": chart.state_dict(), "max_atoms": int(train_set.num_atoms.max()),
             "dataset": args.dataset, "train_size": len(train_set)}
    cfg = TrainConfig(max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                      val_every=args.val_every, seed=args.seed, max_minutes=args.max_minutes)
    validate = csp_validator(flow, val_set, size=args.val_size, steps=args.val_steps, seed=args.seed)
    result = train(
        flow, train_set, cfg, args.out,
        make_checkpoint=lambda w, s: make_csp_checkpoint(flow, args.model, stats, w, s),
        validate=validate, resume=args.resume, progress=progress,
    )
    print(json.dumps({"steps": result.steps, "seconds": round(result.seconds, 1),
                      "best_val_match_rate": result.best_score, "last": str(result.last_path),
                      "best": str(result.best_path) if result.best_path else None}))
    return 0


def run_sgcsp(args: argparse.Namespace) -> int:
    """Train the space-group conditioned flow on symmetrised conventional cells."""
    from crystalflow.crystals.dataset import DATASETS, resolve_data_dir
    from crystalflow.crystals.symmetric import SymmetricDataset, load_symmetric_split
    from crystalflow.errors import InputError
    from crystalflow.models import build_model
    from crystalflow.pretrained import make_sgcsp_checkpoint
    from crystalflow.sgcsp import FamilyLatticeChart, SGCSPConfig, SGCSPFlow
    from crystalflow.training import TrainConfig, train
    from crystalflow.validation import sgcsp_validator

    model_name = args.model or "sgnet"
    if model_name != "sgnet":
        raise InputError("--task sgcsp needs --model sgnet")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    progress = not args.no_progress
    train_set = load_symmetric_split(args.dataset, "train", args.data_dir, progress=progress)
    if DATASETS[args.dataset]["train"] == DATASETS[args.dataset]["val"]:
        val_set = load_symmetric_split(args.dataset, "val", args.data_dir, progress=progress)
    else:  # only the first rows are needed for validation: analyse (and cache) just those
        root = resolve_data_dir(args.data_dir) / args.dataset
        val_set = SymmetricDataset.from_csv(root / DATASETS[args.dataset]["val"],
                                            limit=max(args.val_size, 500), progress=progress)
    chart = FamilyLatticeChart.fit(train_set.lattice, train_set.space_groups)
    model = build_model(model_name, {"hidden": args.hidden, "layers": args.layers})
    lattice_weight = 0.5 if args.lattice_weight is None else args.lattice_weight
    flow = SGCSPFlow(model, chart, SGCSPConfig(lattice_weight=lattice_weight))
    stats = {"lattice_chart": chart.state_dict(), "max_atoms": int(train_set.num_atoms.max()),
             "dataset": args.dataset, "train_size": len(train_set), "cell": "conventional",
             "symprec": 0.1}
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
                      "best": str(result.best_path) if result.best_path else None}))
    return 0
