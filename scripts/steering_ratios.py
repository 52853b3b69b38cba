"""S.U.N. counts, Wilson intervals and rate ratios against a baseline, from the per-structure CSVs
that ``scripts/bench_steering.py`` (or ``crystalflow evaluate stability --train``) writes.

    python scripts/steering_ratios.py --baseline runs/steering/s10_n1000/plain.csv \\
        runs/steering/s11_n1000/smc_4_0.5.csv runs/steering/s11_n1000/best-of-n_8.csv

For every CSV: samples, stable (E_hull <= 0, plus the 1e-6 hull tolerance), S.U.N., S.U.N. within
the hull floor (stable samples no more than ``--hull-floor`` eV/atom below the hull, the count a gap
of the reference hull cannot inflate; ``crystalflow.metrics.stability``), each with its 95% Wilson
interval, and the ratio of each rate to the baseline's with its 95% interval (Katz log method).
The rates are recomputed with :func:`crystalflow.metrics.stability.stability_metrics`, so they are
the numbers ``evaluate stability`` reports. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

Z95 = 1.959963984540054


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``k / n``."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + Z95 ** 2 / (2 * n)) / (1 + Z95 ** 2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / (1 + Z95 ** 2 / n)
    return centre - half, centre + half


def rate_ratio(k1: int, n1: int, k0: int, n0: int) -> tuple[float, float, float]:
    """``(k1/n1) / (k0/n0)`` and its 95% interval (Katz: normal on the log ratio)."""
    if k1 == 0 or k0 == 0:
        return float("nan"), float("nan"), float("nan")
    r = (k1 / n1) / (k0 / n0)
    se = math.sqrt(1 / k1 - 1 / n1 + 1 / k0 - 1 / n0)
    return r, r * math.exp(-Z95 * se), r * math.exp(Z95 * se)


def counts(path: Path, hull_floor: float) -> dict:
    """Counts of one per-structure stability CSV (denominator: every row)."""
    from crystalflow.metrics.stability import read_stability_csv, stability_metrics

    m = stability_metrics(read_stability_csv(path), hull_floor=hull_floor)
    n = m.num_structures
    return {"n": n, "stable": round(m.frac_stable * n), "sun": round(m.sun_rate * n),
            "sun_floor": round(m.sun_floor_rate * n), "below_floor": round(m.frac_below_floor * n),
            "unique": m.unique_rate, "novel": m.novel_rate}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", type=Path, required=True, help="the unsteered per-structure CSV")
    ap.add_argument("csvs", type=Path, nargs="+", help="per-structure CSVs to compare with it")
    ap.add_argument("--hull-floor", type=float, default=0.1, help="eV/atom (default 0.1)")
    args = ap.parse_args()
    base = counts(args.baseline, args.hull_floor)
    print("| CSV | n | stable | below floor | S.U.N. (95% Wilson) | ratio (95%) | S.U.N. within floor "
          "(95% Wilson) | ratio (95%) | unique | novel |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in [args.baseline, *args.csvs]:
        c = counts(path, args.hull_floor)
        cells = []
        for key in ("sun", "sun_floor"):
            lo, hi = wilson(c[key], c["n"])
            r, rlo, rhi = rate_ratio(c[key], c["n"], base[key], base["n"])
            cells.append(f"{c[key]} ({c[key] / c['n']:.1%}, {lo:.1%}-{hi:.1%}) | {r:.2f} ({rlo:.2f}-{rhi:.2f})")
        print(f"| {path} | {c['n']} | {c['stable']} | {c['below_floor']} | {cells[0]} | {cells[1]} "
              f"| {c['unique']:.1%} | {c['novel']:.1%} |")


if __name__ == "__main__":
    main()
