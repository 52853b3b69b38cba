"""Training throughput of the CSP flow (the real training loop); prints ONE JSON line.

Usage:
  OMP_NUM_THREADS=1 python scripts/bench_training.py --dataset mp_20 --batch-size 128 --threads 1
Runs :func:`crystalflow.training.train` (no validation) for ``--warmup + --steps`` steps on the
train split with the default CSPNet, then reads the loop's own ``log.csv`` (wall-clock seconds
after every step) and reports steps/s and structures/s over the last ``--steps`` steps (batch
assembly, forward, backward, clipping, optimiser and EMA update all included). Peak memory: on
CUDA the peak allocated device memory; on CPU the peak resident set size of the process
(``ru_maxrss``) next to the resident size just before training (data + model loaded). CPU time of
the whole call (``*_cpu_*_all``: all steps including warm-up and the final checkpoint) is the
robust number on a shared machine with one thread.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

from _memory import current_rss_mb, peak_rss_mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mp_20")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default=None, help="default: the training loop's default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label", default="")
    args = ap.parse_args()

    import torch

    from crystalflow.crystals import load_split
    from crystalflow.crystal_tasks.csp import CSPConfig, CSPFlow
    from crystalflow.manifolds import LatticeChart
    from crystalflow.models import build_model
    from crystalflow.pretrained import make_csp_checkpoint
    from crystalflow.training import TrainConfig, train

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_set = load_split(args.dataset, "train", args.data_dir, progress=False)
    chart = LatticeChart.fit(train_set.lattice)
    model = build_model("cspnet", {"hidden": args.hidden, "layers": args.layers})
    flow = CSPFlow(model, chart, CSPConfig())
    total = args.warmup + args.steps
    cfg = TrainConfig(max_steps=total, batch_size=args.batch_size, val_every=10**9, seed=args.seed,
                      warmup_steps=1)
    stats = {"lattice_chart": chart.state_dict(), "dataset": args.dataset}
    kw = {} if args.device is None else {"device": args.device}
    cuda = args.device is not None and torch.device(args.device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    before = current_rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        train(flow, train_set, cfg, tmp, progress=False,
              make_checkpoint=lambda w, s: make_csp_checkpoint(flow, "cspnet", stats, w, s), **kw)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        with open(Path(tmp) / "log.csv") as fh:
            rows = {int(r["step"]): float(r["seconds"]) for r in csv.DictReader(fh)}
    secs = rows[total] - rows[args.warmup]
    import crystalflow

    out = {"bench": "training", "label": args.label, "code": str(Path(crystalflow.__file__).parent),
           "dataset": args.dataset,
           "batch_size": args.batch_size, "hidden": args.hidden, "layers": args.layers,
           "threads": args.threads, "device": args.device or "default",
           "timed_steps": args.steps, "seconds": round(secs, 3),
           "steps_per_s": round(args.steps / secs, 4),
           "structures_per_s": round(args.steps * args.batch_size / secs, 2),
           "wall_seconds_incl_warmup": round(wall, 2),
           "cpu_seconds_per_step_all": round(cpu / total, 3),
           "structures_per_cpu_s_all": round(total * args.batch_size / cpu, 2),
           "rss_before_mb": round(before, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}
    if cuda:
        out["peak_device_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
