"""Record, in a DNG checkpoint, how many distinct elements each skeleton's training crystals hold.

Usage: python scripts/add_element_counts.py crystalflow/checkpoints/dng_mp_20.pt --data-dir ../shared/data

Checkpoints trained before the element-count coupling (``generate`` draws a number of distinct
elements with every skeleton) store only the skeletons and their counts. This re-reads the
checkpoint's training split (``stats["dataset"]``, ``train``), rebuilds the skeleton distribution,
checks that its skeletons and counts are exactly the stored ones (so the data are the ones the
checkpoint was trained on) and writes the histograms beside them; weights are checked unchanged.
"""

from __future__ import annotations

import argparse

from crystalflow.checkpoint import load_checkpoint, rewrite_checkpoint
from crystalflow.crystal_tasks.skeletons import SkeletonDistribution
from crystalflow.crystals.symmetric import load_symmetric_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    ck = load_checkpoint(args.path)
    if ck.task != "dng":
        raise SystemExit(f"{args.path} is a {ck.task} checkpoint, not dng")
    stored = SkeletonDistribution.from_state_dict(ck.stats["skeletons"])
    train = load_symmetric_split(ck.stats["dataset"], "train", args.data_dir, workers=2)
    rebuilt = SkeletonDistribution.from_templates(train.templates)
    if (rebuilt.skeletons, rebuilt.counts) != (stored.skeletons, stored.counts):
        raise SystemExit("the training split's skeletons differ from the checkpoint's: not its data")
    stats = {**ck.stats, "skeletons": rebuilt.state_dict()}
    back = rewrite_checkpoint(args.path, stats=stats)
    hist = SkeletonDistribution.from_state_dict(back.stats["skeletons"]).element_counts
    print(f"{args.path}: element-count histograms of {len(hist)} skeletons recorded")


if __name__ == "__main__":
    main()
