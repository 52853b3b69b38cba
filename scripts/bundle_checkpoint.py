"""Make a bundled (small, inference-only) checkpoint from a training checkpoint.

Usage: python scripts/bundle_checkpoint.py runs/perov_5/best.pt crystalflow/checkpoints/csp_perov_5.pt \
           --steps 50 --method euler --anti-annealing-frac 10
Drops the optimiser and raw weights (keeps the EMA weights), records the training step and time
under ``extra``, and sets the sampling defaults chosen on the validation slice.
"""

from __future__ import annotations

import argparse
import dataclasses

from crystalflow.checkpoint import load_checkpoint, save_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--method", choices=["euler", "midpoint", "rk4"])
    ap.add_argument("--anti-annealing-frac", type=float)
    args = ap.parse_args()
    ck = load_checkpoint(args.src)
    task_config = dict(ck.task_config)
    for key, val in (("steps", args.steps), ("method", args.method),
                     ("anti_annealing_frac", args.anti_annealing_frac)):
        if val is not None:
            task_config[key] = val
    ts = ck.train_state or {}
    extra = {**ck.extra, "train_step": ts.get("step"), "train_seconds": ts.get("elapsed"),
             "train_config": ts.get("config")}
    weights = {k: v.float() if v.is_floating_point() else v for k, v in ck.weights.items()}
    save_checkpoint(dataclasses.replace(ck, task_config=task_config, train_state=None, extra=extra,
                                        weights=weights), args.dst)
    print(f"wrote {args.dst}: step {extra['train_step']}, {task_config}")


if __name__ == "__main__":
    main()
