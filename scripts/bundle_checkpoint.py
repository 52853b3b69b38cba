"""Make a bundled (small, inference-only) checkpoint from a training checkpoint.

Usage: python scripts/bundle_checkpoint.py runs/perov_5/best.pt crystalflow/checkpoints/csp_perov_5.pt \
           --steps 50 --method euler --anti-annealing-frac 10
Drops the optimiser and raw weights (keeps the EMA weights), records the training step and time
under ``extra``, and sets the sampling defaults chosen on the validation slice.

A continued checkpoint (``train --init-from BUNDLED``) keeps its history with ``--continues BUNDLED``:
the bundled checkpoint's sampling choices (``extra['geometry_choice']``) carry over, and its own
stage (step, seconds, config, note) is appended to ``extra['previous_stages']``. ``--note`` records
why this stage was chosen.
"""

from __future__ import annotations

import argparse
import dataclasses

from crystalflow.checkpoint import load_checkpoint, save_checkpoint


#: keys of ``extra`` that describe one training stage
STAGE_KEYS = ("train_step", "train_seconds", "train_config", "note")


def carried_history(previous: dict) -> dict:
    """What a continued checkpoint inherits from the ``extra`` of the checkpoint it continued:
    its sampling choices (every key that is not a stage key) and its stage history, with its
    own stage appended to ``previous_stages``."""
    carried = {k: v for k, v in previous.items() if k not in STAGE_KEYS and k != "previous_stages"}
    stage = {k: previous[k] for k in STAGE_KEYS if k in previous}
    carried["previous_stages"] = [*previous.get("previous_stages", []), stage]
    return carried


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--method", choices=["euler", "midpoint", "rk4"])
    ap.add_argument("--anti-annealing-frac", type=float)
    ap.add_argument("--continues", help="the bundled checkpoint this training stage continued")
    ap.add_argument("--note", help="why this stage was chosen (extra['note'])")
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
    if args.continues:
        extra.update(carried_history(load_checkpoint(args.continues).extra))
    if args.note:
        extra["note"] = args.note
    weights = {k: v.float() if v.is_floating_point() else v for k, v in ck.weights.items()}
    save_checkpoint(dataclasses.replace(ck, task_config=task_config, train_state=None, extra=extra,
                                        weights=weights), args.dst)
    print(f"wrote {args.dst}: step {extra['train_step']}, {task_config}")


if __name__ == "__main__":
    main()
