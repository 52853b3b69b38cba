"""CHGNet relaxation, one structure at a time (CHGNet's StructOptimizer, ASE) vs batched
(crystalflow.metrics.relax_batch), on the same structures in the same (single-threaded) process.

Structures: the first ``--n`` MP-20 test rows, every site moved ``--rattle`` A in a random
direction so there is something to relax. Prints wall time per structure for both paths, the
speed-up, mean and max |dE| per atom between them, final volume differences and converged counts
(also as JSON with ``--json``).

Usage:
    OMP_NUM_THREADS=1 nice -n 5 python scripts/bench_relax.py --n 64 --steps 100
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from pathlib import Path


def rattled_mp20(path: str | None, n: int, rattle: float, seed: int = 0) -> list:
    """The first ``n`` MP-20 test structures, each site displaced by ``rattle`` A (random direction)."""
    import numpy as np

    from crystalflow.metrics.hull import default_data_dir
    from crystalflow.metrics.io import load_reference_csv

    if path is None:
        beside = Path(__file__).resolve().parents[2] / "shared" / "data" / "mp_20" / "test.csv.gz"
        path = str(beside if beside.is_file() and "CRYSTALFLOW_DATA" not in os.environ
                   else default_data_dir() / "test.csv.gz")
    structures = list(load_reference_csv(path, limit=n, progress=False).structures)
    rng = np.random.default_rng(seed)
    for s in structures:
        moves = rng.normal(size=(len(s), 3))
        moves *= rattle / np.linalg.norm(moves, axis=1, keepdims=True)
        for i, move in enumerate(moves):
            s.translate_sites([i], move, frac_coords=False, to_unit_cell=False)
    return structures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="MP-20 test CSV (default ../shared/data/mp_20/test.csv.gz)")
    parser.add_argument("--n", type=int, default=64, help="structures")
    parser.add_argument("--rattle", type=float, default=0.05, help="displacement per site (A)")
    parser.add_argument("--steps", type=int, default=100, help="FIRE step budget")
    parser.add_argument("--fmax", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=None, help="default: RELAX_BATCH_SIZE")
    parser.add_argument("--skip-one-by-one", action="store_true", help="time the batched path only")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.filterwarnings("ignore")
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from crystalflow.metrics.energy import load_chgnet, relax
    from crystalflow.metrics.relax_batch import RELAX_BATCH_SIZE, relax_batch

    structures = rattled_mp20(args.data, args.n, args.rattle)
    batch_size = args.batch_size or RELAX_BATCH_SIZE
    load_chgnet()  # model loading is not part of the per-structure cost
    t = time.perf_counter()
    batched = relax_batch(structures, steps=args.steps, fmax=args.fmax, batch_size=batch_size, progress=False)
    t_batch = time.perf_counter() - t
    out = {
        "n": len(structures), "atoms_mean": statistics.mean(len(s) for s in structures), "steps": args.steps,
        "fmax": args.fmax, "rattle": args.rattle, "batch_size": batch_size,
        "batched_s_per_structure": t_batch / len(structures),
        "batched_converged": sum(r.converged for r in batched),
        "batched_failed": sum(r.error is not None for r in batched),
        "batched_mean_steps": statistics.mean(r.steps for r in batched),
    }
    if not args.skip_one_by_one:
        t = time.perf_counter()
        single = [relax(s, steps=args.steps, fmax=args.fmax) for s in structures]
        t_single = time.perf_counter() - t
        pairs = [(a, b) for a, b in zip(single, batched) if a.error is None and b.error is None]
        de = np.array([abs(a.energy_per_atom - b.energy_per_atom) for a, b in pairs])
        dv = np.array([abs(b.structure.volume / a.structure.volume - 1) for a, b in pairs])
        out |= {
            "one_by_one_s_per_structure": t_single / len(structures),
            "speedup": t_single / t_batch,
            "one_by_one_converged": sum(r.converged for r in single),
            "one_by_one_failed": sum(r.error is not None for r in single),
            "one_by_one_mean_steps": statistics.mean(r.steps for r in single),
            "mean_abs_dE_meV_per_atom": 1e3 * float(de.mean()), "max_abs_dE_meV_per_atom": 1e3 * float(de.max()),
            "over_5meV": int((de > 5e-3).sum()), "max_rel_dV": float(dv.max()),
            "same_steps": sum(a.steps == b.steps for a, b in pairs),
        }
    for key, value in out.items():
        print(f"{key:28s} {value:.4g}" if isinstance(value, float) else f"{key:28s} {value}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
