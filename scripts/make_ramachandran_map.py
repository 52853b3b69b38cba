"""Build the Ramachandran region map of crystalflow.proteins.ramachandran from the training chains.

Prints the ASCII map (paste it into RAMA_MAP) and the favoured / allowed fractions of the
training and held-out residues under it:

    CRYSTALFLOW_DATA=../shared/data python scripts/make_ramachandran_map.py
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from crystalflow.proteins.dataset import SPLITS, read_segments, resolve_protein_dir
    from crystalflow.proteins.ramachandran import (
        backbone_dihedrals, density_map, format_map, threshold_map,
    )

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    root = resolve_protein_dir(args.data_dir)
    angles = {}
    for split in ("train", "test"):
        ds = read_segments(root / SPLITS[split], min_length=40)
        angles[split] = np.concatenate([backbone_dihedrals(ds.segment(i)) for i in range(ds.num_segments)])
    codes = threshold_map(density_map(angles["train"]), angles["train"])
    print(format_map(codes))
    print(f"plane area: favoured {np.mean(codes == 2):.3f}, allowed {np.mean(codes >= 1):.3f}")
    for split, a in angles.items():
        a = a[np.isfinite(a).all(-1)]
        nb = codes.shape[0]
        idx = np.floor((a + 180.0) / (360 / nb)).astype(int) % nb
        c = codes[idx[:, 1], idx[:, 0]]
        print(f"{split}: {len(a)} residues, favoured {np.mean(c == 2):.4f}, allowed {np.mean(c >= 1):.4f}")


if __name__ == "__main__":
    main()
