"""CSP quality against solver, step count and anti-annealing, on a fixed slice of a split.

Usage (one checkpoint, every setting run):
  python scripts/bench_nfe.py --checkpoint crystalflow/checkpoints/csp_perov_5.pt \
      --dataset perov_5 --split val --limit 200 --methods euler --steps 20 50 100 --anti 0 5 10
The sweep of BENCHMARKS.md (both bundled models, first 500 test rows, a CPU budget):
  OMP_NUM_THREADS=1 nice -n 5 python scripts/bench_nfe.py --checkpoint csp_perov_5.pt csp_mp_20.pt \
      --dataset perov_5 mp_20 --split test --limit 500 --methods euler midpoint rk4 \
      --steps 5 10 20 50 100 200 1000 --anti 0 20 --threads 1 --workers 1 \
      --budget-cpu-minutes 40 --out runs/perf/nfe.jsonl
  python scripts/bench_nfe.py --plot runs/perf/nfe.jsonl --png docs/nfe_sweep.png
Prints (and appends to ``--out``) one JSON line per setting: method, steps, nfe, anti-annealing
slope, match rate (validity filtered, the field's definition), unfiltered rate, RMSE, sampling and
total CPU seconds. With ``--budget-cpu-minutes`` the settings run cheapest first (cost predicted
as CPU seconds per network evaluation times NFE plus the matching cost, both measured per dataset
on its cheapest setting) and a setting whose predicted cost no longer fits the remaining budget is not run but
printed with ``"skipped": "budget"`` and its predicted cost.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time


def _cpu() -> float:
    """CPU seconds of this process and its finished children (matching workers)."""
    import os

    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_sweep(args: argparse.Namespace) -> None:
    import torch

    from crystalflow.crystals import load_split
    from crystalflow.crystal_tasks.csp import CSPConfig
    from crystalflow.metrics.csp import csp_metrics
    from crystalflow.crystal_tasks.prediction import sample_structures
    from crystalflow.pretrained import load_pretrained
    from crystalflow.solvers import nfe

    torch.set_num_threads(args.threads)
    if len(args.checkpoint) != len(args.dataset):
        raise SystemExit("give one --dataset per --checkpoint")
    setups = {}
    for ckpt_name, dataset in zip(args.checkpoint, args.dataset):
        ds = load_split(dataset, args.split, args.data_dir, progress=False)
        n = min(args.limit, len(ds))
        flow, _ = load_pretrained(ckpt_name)
        setups[dataset] = dict(
            flow=flow, base=flow.config, checkpoint=ckpt_name, n=n,
            refs=[ds[i].to_structure() for i in range(n)],
            types=[ds[i].atom_types.tolist() for i in range(n)],
        )
    cells = [(d, m, s, a) for d in setups for m, s, a in
             itertools.product(args.methods, args.steps, args.anti)]
    per_nfe: dict[str, float] = {}
    match_cost: dict[str, float] = {}
    budget = None if args.budget_cpu_minutes is None else 60 * args.budget_cpu_minutes
    start_cpu, start_wall = _cpu(), time.time()
    out = open(args.out, "a") if args.out else None

    def emit(rec: dict) -> None:
        line = json.dumps(rec)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    def run_cell(dataset: str, method: str, steps: int, slope: float) -> dict:
        su = setups[dataset]
        flow = su["flow"]
        flow.config = CSPConfig(**{**su["base"].to_dict(), "anti_annealing_frac": slope})
        c0, t0 = _cpu(), time.time()
        crystals = sample_structures(flow, su["types"], steps=steps, method=method, seed=args.seed,
                                     batch_size=512)
        sample_cpu, secs = _cpu() - c0, time.time() - t0
        m = csp_metrics([[c.to_structure()] for c in crystals], su["refs"], workers=args.workers,
                        progress=False)
        return {"dataset": dataset, "checkpoint": su["checkpoint"], "split": args.split,
                "n": su["n"], "method": method, "steps": steps, "nfe": nfe(method, steps),
                "anti_annealing_frac": slope, "match_rate": m.match_rate,
                "match_rate_unfiltered": m.match_rate_unfiltered, "rmse": m.rmse,
                "sampling_seconds": round(secs, 1), "sampling_cpu_seconds": round(sample_cpu, 1),
                "cpu_seconds": round(_cpu() - c0, 1)}

    if budget is None:
        for cell in cells:
            emit(run_cell(*cell))
        return
    # probe each dataset on its cheapest setting to learn its CPU cost per network evaluation
    for dataset in setups:
        cell = min((c for c in cells if c[0] == dataset), key=lambda c: nfe(c[1], c[2]))
        rec = run_cell(*cell)
        per_nfe[dataset] = rec["sampling_cpu_seconds"] / rec["nfe"]
        match_cost[dataset] = rec["cpu_seconds"] - rec["sampling_cpu_seconds"]
        rec["probe_cpu_per_nfe"] = round(per_nfe[dataset], 4)
        rec["probe_matching_cpu"] = round(match_cost[dataset], 1)
        emit(rec)
        cells.remove(cell)

    def cost(c: tuple) -> float:
        return per_nfe[c[0]] * nfe(c[1], c[2]) + match_cost[c[0]]

    cells.sort(key=cost)
    for dataset, method, steps, slope in cells:
        predicted = cost((dataset, method, steps, slope))
        used = _cpu() - start_cpu
        late = args.deadline_minutes is not None and \
            (time.time() - start_wall + predicted) > 60 * args.deadline_minutes
        if used + predicted > budget or late:
            emit({"dataset": dataset, "method": method, "steps": steps, "nfe": nfe(method, steps),
                  "anti_annealing_frac": slope, "skipped": "budget" if not late else "deadline",
                  "predicted_cpu_seconds": round(predicted, 1), "cpu_used": round(used, 1)})
            continue
        emit(run_cell(dataset, method, steps, slope))


def _key(r: dict) -> tuple:
    return r["dataset"], r["method"], r["steps"], float(r["anti_annealing_frac"])


def _measured(path: str) -> list[dict]:
    """The JSON lines of a sweep, a setting measured twice kept once (the first)."""
    seen, rows = set(), []
    for line in open(path):
        if not line.strip():
            continue
        r = json.loads(line)
        if "match_rate" in r and _key(r) in seen:
            continue
        if "match_rate" in r:
            seen.add(_key(r))
        rows.append(r)
    return rows


def plot(path: str, png: str) -> None:
    """Match rate against NFE, one line per solver and anti-annealing, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in _measured(path) if "match_rate" in r]
    datasets = sorted({r["dataset"] for r in rows}, key=lambda d: (d != "perov_5", d))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.2), squeeze=False)
    colors = {"euler": "C0", "midpoint": "C1", "rk4": "C2"}
    for ax, dataset in zip(axes[0], datasets):
        for method in ("euler", "midpoint", "rk4"):
            for slope, style, marker in ((0.0, "--", "o"), (20.0, "-", "s")):
                pts = sorted((r["nfe"], 100 * r["match_rate"]) for r in rows if r["dataset"] == dataset
                             and r["method"] == method and float(r["anti_annealing_frac"]) == slope)
                if pts:
                    ax.plot(*zip(*pts), style, marker=marker, ms=3.5, color=colors[method],
                            label=f"{method}, anti-annealing {slope:g}")
        ax.set_xscale("log")
        ax.set_xlabel("network evaluations (NFE)")
        ax.set_ylabel("match rate (%)")
        n = max(r["n"] for r in rows if r["dataset"] == dataset)
        ax.set_title(f"{dataset}: first {n} test rows")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(f"wrote {png}")


def table(path: str) -> str:
    """A markdown table of a JSON-lines file (measured settings, then the skipped ones)."""
    rows = _measured(path)
    done = sorted((r for r in rows if "match_rate" in r),
                  key=lambda r: (r["dataset"] != "perov_5", r["method"], r["steps"],
                                 r["anti_annealing_frac"]))
    lines = ["| dataset | solver | steps | NFE | anti-annealing | match rate | unfiltered | RMSE "
             "| sampling CPU s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in done:
        rmse = "-" if r["rmse"] is None else f"{r['rmse']:.4f}"
        lines.append(f"| {r['dataset']} | {r['method']} | {r['steps']} | {r['nfe']} | "
                     f"{r['anti_annealing_frac']:g} | {100 * r['match_rate']:.1f}% | "
                     f"{100 * r['match_rate_unfiltered']:.1f}% | {rmse} | {r['sampling_cpu_seconds']} |")
    ran = {_key(r) for r in done}
    skipped = [r for r in rows if "skipped" in r and _key(r) not in ran]
    if skipped:
        lines.append("")
        lines.append("Not run (predicted CPU seconds did not fit the budget / wall-clock limit): " + ", ".join(
            f"{r['dataset']} {r['method']} {r['steps']} (anti {r['anti_annealing_frac']:g}, "
            f"~{r['predicted_cpu_seconds']:.0f} s)" for r in skipped))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", nargs="+")
    ap.add_argument("--dataset", nargs="+")
    ap.add_argument("--split", default="val")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--methods", nargs="+", default=["euler"])
    ap.add_argument("--steps", nargs="+", type=int, default=[50])
    ap.add_argument("--anti", nargs="+", type=float, default=[0.0], help="frac anti-annealing slopes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget-cpu-minutes", type=float, default=None)
    ap.add_argument("--deadline-minutes", type=float, default=None, help="wall-clock limit")
    ap.add_argument("--out", default=None, help="also append the JSON lines to this file")
    ap.add_argument("--plot", default=None, help="plot a JSON-lines file instead of sampling")
    ap.add_argument("--png", default="docs/nfe_sweep.png")
    args = ap.parse_args()
    if args.plot:
        plot(args.plot, args.png)
        print(table(args.plot))
        return
    if not args.checkpoint or not args.dataset:
        ap.error("--checkpoint and --dataset are required")
    run_sweep(args)


if __name__ == "__main__":
    main()
