"""CSP quality against solver, step count and anti-annealing, on a fixed slice of a split.

Usage:
  python scripts/bench_nfe.py --checkpoint crystalflow/checkpoints/csp_perov_5.pt \
      --dataset perov_5 --split val --limit 200 --methods euler --steps 20 50 100 --anti 0 5 10
Prints one JSON line per setting: method, steps, nfe, anti-annealing slope, match rate (validity
filtered, the field's definition), unfiltered rate, RMSE and sampling seconds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import torch

from crystalflow.crystals import load_split
from crystalflow.csp import CSPConfig
from crystalflow.metrics.csp import csp_metrics
from crystalflow.pretrained import load_pretrained
from crystalflow.prediction import sample_structures
from crystalflow.solvers import nfe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--methods", nargs="+", default=["euler"])
    ap.add_argument("--steps", nargs="+", type=int, default=[50])
    ap.add_argument("--anti", nargs="+", type=float, default=[0.0], help="frac anti-annealing slopes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_split(args.dataset, args.split, args.data_dir, progress=False)
    n = min(args.limit, len(ds))
    refs = [ds[i].to_structure() for i in range(n)]
    types = [ds[i].atom_types.tolist() for i in range(n)]
    flow, _ = load_pretrained(args.checkpoint)
    base = flow.config
    for method, steps, slope in itertools.product(args.methods, args.steps, args.anti):
        flow.config = CSPConfig(**{**base.to_dict(), "anti_annealing_frac": slope})
        t0 = time.time()
        crystals = sample_structures(flow, types, steps=steps, method=method, seed=args.seed, batch_size=512)
        secs = time.time() - t0
        m = csp_metrics([[c.to_structure()] for c in crystals], refs, workers=args.workers, progress=False)
        print(json.dumps({"dataset": args.dataset, "split": args.split, "n": n, "method": method,
                          "steps": steps, "nfe": nfe(method, steps), "anti_annealing_frac": slope,
                          "match_rate": m.match_rate, "match_rate_unfiltered": m.match_rate_unfiltered,
                          "rmse": m.rmse, "sampling_seconds": round(secs, 1)}), flush=True)


if __name__ == "__main__":
    main()
