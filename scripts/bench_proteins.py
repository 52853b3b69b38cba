"""Benchmark protein backbone generation against training and held-out chains.

For each length: sample ``--num`` backbones with the checkpoint (timed) under every combination
of the given sampler settings (``--steps``, ``--rot-anti-annealing``, ``--clash-guidance``), then
compute the metrics of :mod:`crystalflow.proteins.metrics` for the samples, for ``--ref-num``
random length-matched crops of the training chains (db55_unbound segments) and of the held-out
chains (dips_test segments). Novelty is the highest TM-score against ``--novelty-refs`` random
whole training segments (0: skipped). Prints markdown tables and writes everything to ``--out``
as JSON.

    OMP_NUM_THREADS=1 python scripts/bench_proteins.py --data-dir ../shared/data \
        --lengths 64 128 --num 16 --out bench_proteins.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import replace
from pathlib import Path

import torch


def main() -> None:
    from crystalflow.proteins.dataset import SPLITS, read_segments, resolve_protein_dir
    from crystalflow.proteins.generate import generate_backbones
    from crystalflow.proteins.metrics import (
        backbone_metrics, ca_ca_in_range, format_table, length_matched_crops, subsample_references,
    )
    from crystalflow.proteins.pretrained import load_protein_flow, resolve_protein_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="default: the bundled protein checkpoint")
    ap.add_argument("--data-dir", default=None, help="data root holding proteins/")
    ap.add_argument("--lengths", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--num", type=int, default=16, help="samples per length")
    ap.add_argument("--ref-num", type=int, default=50, help="reference crops per length and set")
    ap.add_argument("--steps", type=int, nargs="+", default=[None], help="ODE steps to compare")
    ap.add_argument("--method", default=None)
    ap.add_argument("--rot-anti-annealing", type=float, nargs="+", default=[None],
                    help="one or more slopes to compare (default: the checkpoint's)")
    ap.add_argument("--clash-guidance", type=int, nargs="+", default=[None],
                    help="steric-correction iterations per step to compare (0: off)")
    ap.add_argument("--clash-radius", type=float, nargs="+", default=[None],
                    help="guidance repulsion radii to compare (Angstrom; default: the checkpoint's)")
    ap.add_argument("--clash-bond-weight", type=float, nargs="+", default=[None],
                    help="guidance bond-term weights to compare (default: the checkpoint's)")
    ap.add_argument("--self-condition", nargs="+", choices=["on", "off"], default=["on"],
                    help="with a self-conditioned checkpoint: pass the previous estimate (on) or not "
                         "(off, an ablation); both to compare")
    ap.add_argument("--novelty-refs", type=int, default=0, help="training segments for novelty")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--out", default=None, help="JSON output file")
    ap.add_argument("--pdb-dir", default=None, help="also write the samples as PDB files here")
    args = ap.parse_args()
    torch.set_num_threads(1)

    flow, ckpt = load_protein_flow(args.checkpoint)
    base_config = flow.config
    result: dict = {"checkpoint": str(resolve_protein_checkpoint(args.checkpoint)),
                    "task_config": ckpt.task_config, "model_config": ckpt.model_config,
                    "stats": ckpt.stats, "extra": ckpt.extra,
                    "parameters": sum(p.numel() for p in flow.model.parameters()), "lengths": {}}
    train_info = (ckpt.extra or {}).get("training")
    print(f"checkpoint: {result['checkpoint']} ({result['parameters']:,} parameters)")
    print("training: " + (json.dumps(train_info) if train_info else "not recorded in the checkpoint"))
    refs, novelty = {}, None
    if not args.no_reference or args.novelty_refs:
        root = resolve_protein_dir(args.data_dir)
        for name, split in (("train (db55)", "train"), ("held-out (dips)", "test")):
            ds = read_segments(root / SPLITS[split], min_length=40)
            refs[name] = [ds.segment(i) for i in range(ds.num_segments)]
        if args.novelty_refs:
            novelty = subsample_references(refs["train (db55)"], args.novelty_refs, seed=args.seed + 1)
        if args.no_reference:
            refs = {}
    if args.pdb_dir:
        from crystalflow.proteins.io import write_pdb
    for length in args.lengths:
        cols: dict[str, dict] = {}
        timing = {}
        grid = list(itertools.product(args.steps, args.rot_anti_annealing, args.clash_guidance,
                                      args.self_condition, args.clash_radius, args.clash_bond_weight))
        for steps, slope, guide, sc, radius, bond_weight in grid:
            flow.config = (base_config if bond_weight is None
                           else replace(base_config, clash_guidance_bond_weight=bond_weight))
            t0 = time.time()
            chains = generate_backbones(flow, [length] * args.num, steps=steps, method=args.method,
                                        rot_anti_annealing=slope, batch_size=args.batch_size,
                                        seed=args.seed, clash_guidance=guide, self_condition=sc == "on",
                                        clash_radius=radius)
            secs = time.time() - t0
            cfg = flow.config
            s = cfg.rot_anti_annealing if slope is None else slope
            n = cfg.steps if steps is None else steps
            gd = cfg.clash_guidance if guide is None else guide
            r = cfg.clash_guidance_radius if radius is None else radius
            name = f"generated (n={n}, s={s:g}, g={gd})" if len(grid) > 1 else "generated"
            if len(args.clash_radius) > 1:  # then len(grid) > 1: name ends with ")"
                name = f"{name[:-1]}, r={r:g})"
            if len(args.clash_bond_weight) > 1:
                name = f"{name[:-1]}, bond {cfg.clash_guidance_bond_weight:g})"
            if len(args.self_condition) > 1:  # then len(grid) > 1: name ends with ")"
                name = f"{name[:-1]}, sc {sc})"
            timing[name] = round(secs / args.num, 2)
            cols[name] = backbone_metrics(chains, novelty_refs=novelty).to_dict()
            per_chain = [ca_ca_in_range(c[:, 1]) for c in chains]
            cols[name]["ca_ca_in_range_worst_chain"] = min(per_chain)
            if args.pdb_dir:
                for i, atoms in enumerate(chains):
                    write_pdb(Path(args.pdb_dir) / f"gen_n{n}_s{s:g}_g{gd}_r{r:g}_sc{sc}_{length}_{i}.pdb", atoms)
        for name, segs in refs.items():
            crops = length_matched_crops(segs, length, args.ref_num, seed=args.seed)
            # novelty of training windows against training segments is not informative (their own
            # segment may be among the references): held-out windows only
            nov = novelty if "held-out" in name else None
            cols[name] = backbone_metrics(crops, novelty_refs=nov).to_dict()
        result["lengths"][str(length)] = {"metrics": cols, "seconds_per_sample": timing}
        print(f"\n### length {length}  (sampling: {timing} s/sample, 1 CPU thread)\n")
        print(format_table(cols))
        worst = {k: round(v["ca_ca_in_range_worst_chain"], 3) for k, v in cols.items()
                 if "ca_ca_in_range_worst_chain" in v}
        print(f"\nworst single generated chain, CA-CA in 3.6-4.0 A: {worst}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
