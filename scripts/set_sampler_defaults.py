"""Write a chosen default sampler into a bundled checkpoint, keeping its weights and training record.

Usage: python scripts/set_sampler_defaults.py crystalflow/checkpoints/csp_perov_5.pt \
           --method euler --steps 5 --anti-annealing-frac 0 --note "NFE sweep, BENCHMARKS.md"
The previous sampler settings are kept under ``extra["sampler_choice"]``; the weights are checked
identical after the rewrite. (``bundle_checkpoint.py`` makes a bundle from a training checkpoint;
this only changes the sampler of an existing bundle.)
"""

from __future__ import annotations

import argparse

from crystalflow.checkpoint import load_checkpoint, rewrite_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--method", required=True, choices=["euler", "midpoint", "rk4"])
    ap.add_argument("--steps", required=True, type=int)
    ap.add_argument("--anti-annealing-frac", required=True, type=float)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    ck = load_checkpoint(args.path)
    old = {k: ck.task_config.get(k) for k in ("method", "steps", "anti_annealing_frac")}
    task_config = {**ck.task_config, "method": args.method, "steps": args.steps,
                   "anti_annealing_frac": args.anti_annealing_frac}
    extra = {**ck.extra, "sampler_choice": {"previous": old, "note": args.note}}
    back = rewrite_checkpoint(args.path, task_config=task_config, extra=extra)
    print(args.path, old, "->", {k: back.task_config[k] for k in old})


if __name__ == "__main__":
    main()
