"""Write the two-stage geometry default into a DNG checkpoint, keeping its weights.

Usage: python scripts/set_dng_geometry.py crystalflow/checkpoints/dng_mp_20.pt sgcsp_mp_20.pt \
           --note "MP-20 val, BENCHMARKS.md"
(``none`` as the second argument removes it.) ``generate`` then re-generates positions and lattice of
every sample with that SG-CSP checkpoint (``DNGConfig.geometry``); the previous value is kept under
``extra["geometry_choice"]`` and the weights are checked identical after the rewrite.
"""

from __future__ import annotations

import argparse

from crystalflow.checkpoint import load_checkpoint, rewrite_checkpoint
from crystalflow.pretrained import load_pretrained


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("geometry", help="an sgcsp checkpoint (bundled name or path), or none")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    ck = load_checkpoint(args.path)
    if ck.task != "dng":
        raise SystemExit(f"{args.path} is a {ck.task} checkpoint, not dng")
    geometry = None if args.geometry == "none" else args.geometry
    if geometry is not None:
        load_pretrained(geometry, task="sgcsp")  # must exist and be an sgcsp checkpoint
    old = ck.task_config.get("geometry")
    task_config = {**ck.task_config, "geometry": geometry}
    extra = {**ck.extra, "geometry_choice": {"previous": old, "note": args.note}}
    back = rewrite_checkpoint(args.path, task_config=task_config, extra=extra)
    print(args.path, "geometry:", old, "->", back.task_config["geometry"])


if __name__ == "__main__":
    main()
