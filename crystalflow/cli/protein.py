"""``crystalflow protein {train,generate,evaluate}``: protein backbones by SE(3) flow matching."""

from __future__ import annotations

import argparse
import json

from crystalflow.cli._checks import (
    fraction, nonnegative_float, nonnegative_int, positive_float, positive_int, probability,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("protein", help="protein backbone generation (SE(3) flow matching)",
                       description="Train, sample and evaluate protein backbone flows.")
    psub = p.add_subparsers(dest="protein_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: _help(p))
    _register_train(psub)
    _register_generate(psub)
    _register_evaluate(psub)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


# --------------------------------------------------------------------------- train
def _register_train(psub: argparse._SubParsersAction) -> None:
    p = psub.add_parser("train", help="train a backbone flow on db55_unbound",
                        description="Train on db55_unbound crops, select on dips_test; writes "
                                    "OUT/last.pt, OUT/best.pt, OUT/log.csv.")
    p.add_argument("--data-dir", default=None, help="data root holding proteins/ (default: $CRYSTALFLOW_DATA)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--hidden", type=positive_int, default=128)
    p.add_argument("--pair", type=positive_int, default=32)
    p.add_argument("--layers", type=positive_int, default=4)
    p.add_argument("--frame-updates", action="store_true",
                   help="update the frames after every block (structure-module style)")
    p.add_argument("--crop", type=positive_int, default=128, help="training crop length")
    p.add_argument("--stride", type=positive_int, default=64, help="step between crop windows")
    p.add_argument("--min-length", type=positive_int, default=40, help="shortest segment kept")
    p.add_argument("--max-steps", type=positive_int, default=20000)
    p.add_argument("--max-minutes", type=positive_float, default=None, help="stop after this wall time")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--lr", type=nonnegative_float, default=5e-4)
    p.add_argument("--warmup-steps", type=nonnegative_int, default=200)
    p.add_argument("--ema-decay", type=probability, default=0.999)
    p.add_argument("--rot-weight", type=nonnegative_float, default=0.5)
    p.add_argument("--aux-weight", type=nonnegative_float, default=0.25, help="auxiliary backbone-atom loss weight")
    p.add_argument("--aux-t-min", type=probability, default=0.5)
    p.add_argument("--no-align-prior", action="store_true", help="do not Kabsch-align noise to data")
    p.add_argument("--min-scale", type=probability, default=0.1, help="lower clip of 1 - t in the loss weight")
    p.add_argument("--t-late-fraction", type=probability, default=0.0,
                   help="fraction of training times drawn from U(--t-late-min, 1)")
    p.add_argument("--t-late-min", type=fraction, default=0.8)
    p.add_argument("--val-every", type=positive_int, default=250)
    p.add_argument("--val-size", type=positive_int, default=32, help="held-out crops per validation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--device", default=None,
                   help="cpu, cuda or cuda:K (default: cpu; under torchrun cuda:LOCAL_RANK if available)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="start again in a used OUT (its last.pt, best.pt and log.csv are replaced)")
    p.add_argument("--init-from", default=None,
                   help="start from a protein checkpoint's weights and network size (path or bundled "
                        "name); optimizer and schedule start fresh")
    p.add_argument("--aux-pred-pairs", action="store_true",
                   help="the auxiliary distance loss also covers pairs close in the prediction")
    p.add_argument("--clash-weight", type=nonnegative_float, default=0.0,
                   help="weight of a steric loss on the predicted clean CA positions (0: off)")
    p.add_argument("--clash-t-min", type=probability, default=0.25,
                   help="the steric loss applies to chains with t >= this")
    p.add_argument("--self-condition", action="store_true",
                   help="self-conditioning: the network also sees its previous prediction's CA "
                        "distances (added to an --init-from network without it, starting at zero)")
    p.add_argument("--self-condition-prob", type=probability, default=0.5,
                   help="fraction of training batches that get a first prediction (with --self-condition)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Train through the shared entry (:func:`crystalflow.task_training.train_task`): any
    ``--device``, and data-parallel under ``torchrun --nproc_per_node=N -m crystalflow protein train``."""
    from crystalflow.cli.train import finish
    from crystalflow.models.framenet import FrameNetConfig
    from crystalflow.outputs import check_run_dir
    from crystalflow.pretrained import get_task
    from crystalflow.proteins.flow import BackboneFlowConfig
    from crystalflow.proteins.stats import ProteinStats
    from crystalflow.proteins.train import ProteinTrainOptions, init_checkpoint
    from crystalflow.task_training import RunSettings, train_task
    from crystalflow.training import TrainConfig

    check_run_dir(args.out, resume=args.resume, overwrite=args.overwrite)  # before any data is read
    options = ProteinTrainOptions(
        data_dir=args.data_dir,
        model_config=FrameNetConfig(hidden=args.hidden, pair=args.pair, layers=args.layers,
                                    frame_updates=args.frame_updates,
                                    self_condition=args.self_condition),
        flow_config=BackboneFlowConfig(rot_weight=args.rot_weight, aux_weight=args.aux_weight,
                                       aux_t_min=args.aux_t_min, align_prior=not args.no_align_prior,
                                       min_scale=args.min_scale, t_late_fraction=args.t_late_fraction,
                                       t_late_min=args.t_late_min, aux_pred_pairs=args.aux_pred_pairs,
                                       self_condition_prob=args.self_condition_prob,
                                       clash_weight=args.clash_weight, clash_t_min=args.clash_t_min),
        crop=args.crop, stride=args.stride, min_length=args.min_length, val_size=args.val_size,
        seed=args.seed, init=init_checkpoint(args.init_from), init_from=args.init_from)
    cfg = TrainConfig(max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                      warmup_steps=args.warmup_steps, ema_decay=args.ema_decay,
                      val_every=args.val_every, seed=args.seed, max_minutes=args.max_minutes)
    settings = RunSettings(out=args.out, config=cfg, device=args.device, threads=args.threads,
                           resume=args.resume, progress=not args.no_progress)
    result, built, info = train_task(get_task("protein"), options, settings)
    if info.is_main:
        print(json.dumps({"steps": result.steps, "seconds": round(result.seconds, 1),
                          "best_val_score": result.best_score, "last": str(result.last_path),
                          "best": str(result.best_path) if result.best_path else None,
                          "train_crops": ProteinStats.from_dict(built.stats).train_crops,
                          "processes": info.world_size,
                          "stopped_by": result.stopped_by}))
    return finish(result.stopped_by, result.steps, result.last_path, quiet=not info.is_main)


# --------------------------------------------------------------------------- generate
def _register_generate(psub: argparse._SubParsersAction) -> None:
    p = psub.add_parser("generate", help="sample backbones and write PDB files",
                        description="Sample backbones from a checkpoint (default: the bundled one) "
                                    "and write OUT/sample_<length>_<i>.pdb (poly-GLY backbones).")
    p.add_argument("--length", type=positive_int, nargs="+", required=True,
                   help="chain length(s); a length given twice gets twice --num samples")
    p.add_argument("--num", type=positive_int, default=4, help="samples per length")
    p.add_argument("--out", required=True, help="output directory (new or empty, see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty OUT, removing the files a previous run wrote there")
    p.add_argument("--checkpoint", default=None, help="checkpoint path or bundled name")
    p.add_argument("--steps", type=positive_int, default=None, help="ODE steps (default: checkpoint's)")
    p.add_argument("--method", default=None, choices=["euler", "midpoint", "rk4"])
    p.add_argument("--rot-anti-annealing", type=nonnegative_float, default=None,
                   help="rotation velocity scale slope s (1 + s t); default: checkpoint's")
    p.add_argument("--clash-guidance", type=nonnegative_int, default=None,
                   help="steric-correction steps per ODE step on the predicted CA positions "
                        "(crystalflow.proteins.guidance; 0: off); default: checkpoint's")
    p.add_argument("--clash-radius", type=positive_float, default=None,
                   help="repulsion radius of that correction between non-adjacent CA atoms "
                        "(Angstrom); default: checkpoint's")
    p.add_argument("--batch-size", type=positive_int, default=8, help="chains integrated together")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.set_defaults(func=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    from collections import Counter

    from crystalflow.outputs import prepare_output_dir, record_outputs
    from crystalflow.proteins.flow import check_lengths
    from crystalflow.proteins.generate import generate_backbones
    from crystalflow.proteins.io import write_pdb
    from crystalflow.proteins.metrics import ca_ca_in_range
    from crystalflow.proteins.pretrained import load_protein_flow

    _threads(args)
    flow, _ = load_protein_flow(args.checkpoint)
    check_lengths(args.length, flow.config.min_length, flow.config.max_length)
    out = prepare_output_dir(args.out, overwrite=args.overwrite)
    written, fractions = [], []
    for length, count in Counter(args.length).items():  # a repeated length: more samples of it
        chains = generate_backbones(flow, [length] * (args.num * count), steps=args.steps,
                                    method=args.method, rot_anti_annealing=args.rot_anti_annealing,
                                    batch_size=args.batch_size, seed=args.seed,
                                    clash_guidance=args.clash_guidance, clash_radius=args.clash_radius)
        for i, atoms in enumerate(chains):
            path = out / f"sample_{length}_{i}.pdb"
            write_pdb(path, atoms)
            record_outputs(out, [path.name])
            written.append(str(path))
            fractions.append(ca_ca_in_range(atoms[:, 1]))
    print(json.dumps({"written": written, "ca_ca_in_3.6_4.0": round(sum(fractions) / len(fractions), 4)}))
    return 0


# --------------------------------------------------------------------------- evaluate
def _register_evaluate(psub: argparse._SubParsersAction) -> None:
    p = psub.add_parser("evaluate", help="backbone metrics of PDB files (optionally vs a reference)",
                        description="CA-CA distances, clashes, radius of gyration, P-SEA secondary "
                                    "structure, Ramachandran regions, pairwise TM-score diversity "
                                    "and (optionally) novelty of the chains in DIR.")
    p.add_argument("pdb_dir", help="directory of PDB / mmCIF files (gzip too)")
    p.add_argument("--reference", default=None, help="directory of reference structures")
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    p.add_argument("--max-tm-pairs", type=nonnegative_int, default=2000, help="cap on TM-align pairs per set")
    p.add_argument("--novelty-refs", type=nonnegative_int, default=0,
                   help="novelty: highest TM-score of each chain against this many random training "
                        "segments (db55_unbound, from --data-dir or $CRYSTALFLOW_DATA); 0: skip")
    p.add_argument("--data-dir", default=None, help="data root holding proteins/ (for --novelty-refs)")
    p.add_argument("--split-sample-breaks", action="store_true",
                   help="also cut the chains of PDB_DIR at long C-N bonds (for experimental "
                        "structures; by default generated chains are evaluated whole, while "
                        "reference chains are always cut into continuous segments)")
    p.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from crystalflow.crystals.crystal import write_text_atomic
    from crystalflow.outputs import prepare_output_file
    from crystalflow.proteins.metrics import backbone_metrics, format_table, read_chains

    if args.json:  # a writable place, checked before the metrics are computed
        prepare_output_file(args.json, overwrite=True, option="--json")
    samples = read_chains(args.pdb_dir, split_breaks=args.split_sample_breaks)
    refs = None
    if args.novelty_refs:
        from crystalflow.proteins.dataset import SPLITS, read_segments, resolve_protein_dir
        from crystalflow.proteins.metrics import subsample_references

        train = read_segments(resolve_protein_dir(args.data_dir) / SPLITS["train"])
        refs = subsample_references([train.segment(i) for i in range(train.num_segments)],
                                    args.novelty_refs)
    result = {"samples": backbone_metrics(samples, max_tm_pairs=args.max_tm_pairs,
                                          novelty_refs=refs).to_dict()}
    if args.reference:
        ref = backbone_metrics(read_chains(args.reference), max_tm_pairs=args.max_tm_pairs)
        result["reference"] = ref.to_dict()
    print(format_table(result))
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2))
    return 0
