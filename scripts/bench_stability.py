"""Time the stability evaluation (CHGNet relaxation + E_hull) per structure on this machine.

Structures: the first ``--n`` MP-20 test structures, every site displaced by ``--rattle`` A in a
random direction (a stand-in for generated samples, which start away from a minimum). Each worker
process runs single-threaded. Prints a Markdown table for BENCHMARKS.md.

Usage:
    OMP_NUM_THREADS=1 python scripts/bench_stability.py --n 24 --relax-steps 500 --workers 1 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="MP-20 test CSV (default ../shared/data/mp_20/test.csv.gz)")
    parser.add_argument("--n", type=int, default=24, help="structures")
    parser.add_argument("--rattle", type=float, default=0.1, help="displacement per site (A)")
    parser.add_argument("--relax-steps", type=int, default=500)
    parser.add_argument("--fmax", type=float, default=0.1)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--hull", default=None, help="hull file (default: the cached MP-20 CHGNet hull)")
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.filterwarnings("ignore")
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from crystalflow.metrics.energy import chgnet_version, load_chgnet, static_energies
    from crystalflow.metrics.hull import default_data_dir, load_reference_hull
    from crystalflow.metrics.io import load_reference_csv
    from crystalflow.metrics.stability import evaluate_stability

    data = args.data or str(default_data_dir() / "test.csv.gz")
    structures = list(load_reference_csv(data, limit=args.n, progress=False).structures)
    rng = np.random.default_rng(0)
    for s in structures:
        for i in range(len(s)):
            v = rng.normal(size=3)
            s.translate_sites([i], args.rattle * v / np.linalg.norm(v), frac_coords=False)
    atoms = statistics.mean(len(s) for s in structures)

    t = time.perf_counter()
    hull = load_reference_hull(args.hull)
    hull_load = time.perf_counter() - t

    load_chgnet()  # model loading is not part of the per-structure cost
    t = time.perf_counter()
    static_energies(structures, progress=False)
    static = (time.perf_counter() - t) / len(structures)

    print(f"# stability timing: {len(structures)} MP-20 test structures ({atoms:.1f} atoms on average), "
          f"rattled {args.rattle} A; CHGNet {chgnet_version()}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; one thread per process; load average before: {os.getloadavg()[0]:.1f}")
    print(f"hull load: {hull_load:.1f} s ({len(hull.entries)} entries); "
          f"CHGNet static energy: {static * 1000:.0f} ms/structure (batch 16)")
    print()
    print("| workers | relax steps (max) | mean steps taken | converged | wall s/structure | ms/step/process | E_hull < 0.1 |")
    print("|---|---|---|---|---|---|---|")
    for workers in args.workers:
        t = time.perf_counter()
        result = evaluate_stability(structures, hull, relax_steps=args.relax_steps, fmax=args.fmax,
                                    workers=workers, progress=False)
        wall = (time.perf_counter() - t) / len(structures)
        steps = statistics.mean(r.relax_steps for r in result.records)
        conv = sum(r.converged for r in result.records) / len(result.records)
        per_step = wall * min(workers, len(structures)) / max(steps + 1, 1) * 1000
        print(f"| {workers} | {args.relax_steps} | {steps:.0f} | {conv:.0%} | {wall:.2f} | {per_step:.0f} | "
              f"{result.metrics.frac_metastable:.2f} |", flush=True)


if __name__ == "__main__":
    main()
