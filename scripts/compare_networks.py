"""Train the invariant (CSPNet) and the equivariant (e3nn) networks with the same wall-clock budget,
sample the test split with the same solver, evaluate, and print one table.

Thin: every step is a ``crystalflow`` command (train / predict / evaluate) or
``scripts/bundle_checkpoint.py``; this script only runs them, times them and collects numbers.

Usage (the comparison of BENCHMARKS.md, ~2 h on 2 shared cores):
    python scripts/compare_networks.py --data-dir ../shared/data --out runs/e3nn/cmp \
        --minutes 12 --datasets perov_5 mp_20 --stage all
Stages can be run separately (``--stage train``, ``--stage eval``, ``--stage table``); the two
networks of a dataset train at the same time, so they share the machine's load equally.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

#: per-dataset settings shared by both networks (batch half of BENCHMARKS.md's, so that a 12-minute
#: budget gets past the 200 warm-up steps; sampler of the bundled checkpoints; ``limit`` = test
#: rows evaluated, None = the full split)
DATASETS = {
    "perov_5": {"batch": 128, "steps": 100, "anti": 20.0, "limit": None},
    # MP-20: the bundled csp_mp_20.pt sampler (Euler, 5 steps) so that e3nn's full 9,046-row split
    # costs minutes, not hours; scored on the full split
    "mp_20": {"batch": 64, "steps": 5, "anti": 0.0, "limit": None},
}
#: network name -> its width / depth flags (sizes chosen for this CPU, see notes/e3nn.md)
NETWORKS = {"cspnet": ["--hidden", "128", "--layers", "4"], "e3nn": ["--hidden", "64", "--layers", "3"]}
CLI = [str(Path(sys.executable).parent / "crystalflow")]  # the console script of this environment


def _run_dir(out: Path, dataset: str, net: str) -> Path:
    return out / f"{dataset}_{net}"


def train(args: argparse.Namespace) -> None:
    """Both networks of each dataset at once, ``nice -n 5``, one thread each."""
    for ds in args.datasets:
        procs = []
        for net in args.networks:
            run = _run_dir(args.out, ds, net)
            run.mkdir(parents=True, exist_ok=True)
            cmd = ["nice", "-n", "5", *CLI, "train", "--dataset", ds, "--data-dir", args.data_dir,
                   "--out", str(run), "--model", net, *NETWORKS[net],
                   "--batch-size", str(DATASETS[ds]["batch"]), "--max-minutes", str(args.minutes),
                   "--max-steps", str(args.max_steps[ds][net]), "--val-every", "1000000",
                   "--val-size", "16", "--val-steps", "10", "--threads", "1", "--seed", str(args.seed), "--no-progress"]
            print(" ".join(cmd), flush=True)
            procs.append(subprocess.Popen(cmd, stdout=open(run / "train.out", "w"), stderr=subprocess.STDOUT))
        for p in procs:
            if p.wait() != 0:
                raise SystemExit(f"training failed: {p.args}")


def evaluate(args: argparse.Namespace) -> None:
    """Bundle the last (EMA) checkpoint with the dataset's sampler, predict the test rows, score."""
    for ds in args.datasets:
        cfg = DATASETS[ds]
        for net in args.networks:
            run = _run_dir(args.out, ds, net)
            ckpt = run / "sampler.pt"
            subprocess.run([sys.executable, "scripts/bundle_checkpoint.py", str(run / "last.pt"), str(ckpt),
                            "--steps", str(cfg["steps"]), "--method", "euler",
                            "--anti-annealing-frac", str(cfg["anti"])], check=True)
            pred = run / "pred"
            limit = ["--limit", str(cfg["limit"])] if cfg["limit"] else []
            test = str(Path(args.data_dir) / ds / "test.csv.gz")
            cmd = ["nice", "-n", "5", *CLI, "predict", "--from-csv", test, "--checkpoint", str(ckpt),
                   "--threads", "1", "--batch-size", "512", "--seed", str(args.seed), "--out", str(pred), *limit]
            print(" ".join(cmd), flush=True)
            t0 = time.time()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            seconds = time.time() - t0
            cmd = [*CLI, "evaluate", "csp", "--predictions", str(pred), "--reference", test, "--json",
                   "--workers", "1", "--no-progress", *limit]
            print(" ".join(cmd), flush=True)
            res = subprocess.run(cmd, check=True, capture_output=True, text=True)
            metrics = json.loads(res.stdout.strip().splitlines()[-1])
            metrics["predict_seconds"] = seconds
            (run / "eval.json").write_text(json.dumps(metrics, indent=1))


def _train_stats(run: Path, batch: int) -> dict:
    rows = list(csv.DictReader(open(run / "log.csv")))
    steps, seconds = int(rows[-1]["step"]), float(rows[-1]["seconds"])
    return {"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
            "structures_per_s": steps * batch / seconds,
            "final_loss": sum(float(r["loss"]) for r in rows[-50:]) / len(rows[-50:])}


def _param_count(ckpt: Path) -> int:
    from crystalflow.checkpoint import load_checkpoint
    from crystalflow.pretrained import model_from_checkpoint

    return sum(p.numel() for p in model_from_checkpoint(load_checkpoint(ckpt)).parameters())


def forward_cost(ckpt: Path, dataset: str, data_dir: str, rows: int = 256, repeats: int = 3) -> float:
    """Median seconds of one network evaluation (one NFE, no grad, one thread) on the first
    ``rows`` test compositions at a prior sample, per 1,000 structures."""
    import torch

    from crystalflow.checkpoint import load_checkpoint
    from crystalflow.crystals import load_split
    from crystalflow.crystal_tasks.csp import conditions_of
    from crystalflow.pretrained import csp_flow_from_checkpoint

    torch.set_num_threads(1)
    flow = csp_flow_from_checkpoint(load_checkpoint(ckpt))
    test = load_split(dataset, "test", data_dir, progress=False)
    rows = min(rows, len(test))
    cond = conditions_of(test.batch(range(rows)))
    x = flow.prior(cond, generator=torch.Generator().manual_seed(0))
    t = torch.full((rows,), 0.5)
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            flow.model(x, t, cond)
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2] / (rows / 1000)


def table(args: argparse.Namespace) -> None:
    """Markdown table (and ``summary.json``) from the runs' logs and eval files."""
    lines = ["| dataset (test rows) | network | params | steps in budget | steps/s | structures/s | "
             "final loss (last 50 steps) | match rate | RMSE | unfiltered | valid samples | "
             "sampling s per NFE per 1k structures (predict wall / forward only) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    summary = {}
    for ds in args.datasets:
        cfg = DATASETS[ds]
        for net in args.networks:
            run = _run_dir(args.out, ds, net)
            st = _train_stats(run, cfg["batch"])
            ev = json.loads((run / "eval.json").read_text())
            n = ev["num_references"]
            per_nfe = ev["predict_seconds"] / cfg["steps"] / (n / 1000)
            fwd = forward_cost(run / "sampler.pt", ds, args.data_dir)
            row = {**st, **ev, "params": _param_count(run / "sampler.pt"), "s_per_nfe_per_1k": per_nfe,
                   "forward_s_per_1k": fwd}
            summary[f"{ds}/{net}"] = row
            lines.append(
                f"| {ds} ({n}) | {net} | {row['params']:,} | {st['steps']} | {st['steps_per_s']:.3f} | "
                f"{st['structures_per_s']:.1f} | {st['final_loss']:.3f} | {100 * ev['match_rate']:.2f}% | "
                f"{ev['rmse'] if ev['rmse'] is None else format(ev['rmse'], '.4f')} | "
                f"{100 * ev['match_rate_unfiltered']:.2f}% | "
                f"{100 * ev['num_valid_samples'] / max(1, ev['num_samples']):.1f}% | {per_nfe:.2f} / {fwd:.2f} |")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/e3nn/cmp"))
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    ap.add_argument("--minutes", type=float, default=12.0, help="wall-clock training budget per run")
    ap.add_argument("--max-steps", type=json.loads, default=None,
                    help='cosine-schedule length per dataset and network, JSON, e.g. '
                         '\'{"perov_5": {"cspnet": 500, "e3nn": 250}}\' (default: 100000, i.e. '
                         'the budget stops training before the schedule decays)')
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stage", choices=["train", "eval", "table", "all"], default="all")
    args = ap.parse_args()
    steps = args.max_steps or {}
    args.max_steps = {ds: {net: steps.get(ds, {}).get(net, 100000) for net in NETWORKS} for ds in DATASETS}
    if args.stage in ("train", "all"):
        train(args)
    if args.stage in ("eval", "all"):
        evaluate(args)
    if args.stage in ("table", "all"):
        table(args)


if __name__ == "__main__":
    main()
