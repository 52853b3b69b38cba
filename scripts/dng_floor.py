"""The sampling floor of the DNG distribution metrics: what a perfect generator scores with n crystals.

``d_rho``, ``d_elem`` and ``d_sg`` compare *finite* sample sets, so even crystals drawn from the data
distribution itself score above zero, and by more the fewer they are. This prints, for each n, the
mean and standard deviation of the three distances over draws of n crystals from ``--pool``
(default: the reference itself, with replacement) against the whole ``--reference``
(:func:`crystalflow.metrics.dng.sampling_floor`).

    python scripts/dng_floor.py --reference ../shared/data/mp_20/test.csv.gz --num 800 1000 8000
"""

from __future__ import annotations

import argparse
import json

from crystalflow.metrics.dng import sampling_floor
from crystalflow.metrics.reference import reference_profile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", required=True, help="reference split CSV")
    ap.add_argument("--reference-limit", type=int, default=None, help="first N reference rows only")
    ap.add_argument("--pool", action="append", default=None,
                    help="CSV(s) to draw from instead of the reference (repeat to pool several)")
    ap.add_argument("--num", type=int, nargs="+", required=True, help="sample sizes")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    reference = reference_profile(args.reference, limit=args.reference_limit, progress=False)
    pool = None
    if args.pool:
        import numpy as np

        from crystalflow.metrics.reference import ReferenceProfile

        parts = [reference_profile(path, progress=False) for path in args.pool]
        pool = ReferenceProfile(**{key: np.concatenate([getattr(p, key) for p in parts])
                                   for key in ("densities", "num_elements", "spacegroups", "templates", "lattice")})
    for num in args.num:
        f = sampling_floor(reference, num, pool=pool, repeats=args.repeats, seed=args.seed)
        print(json.dumps({"num": num, "repeats": f.repeats, "reference_size": len(reference),
                          "pool_size": len(pool) if pool is not None else len(reference),
                          "wdist_density": [round(v, 4) for v in f.wdist_density],
                          "wdist_num_elems": [round(v, 4) for v in f.wdist_num_elems],
                          "d_sg": [round(v, 4) for v in f.d_sg]}))


if __name__ == "__main__":
    main()
