"""Sampling throughput of a CSP checkpoint at its default settings; prints ONE JSON line.

Usage:
  OMP_NUM_THREADS=1 python scripts/bench_sampling.py --checkpoint csp_mp_20.pt \
      --batch-sizes 1 64 512 --threads 1
Compositions are the first rows of the checkpoint dataset's test split (cycled). Each batch size
runs in a fresh spawned process, so its peak memory is its own: on CUDA the peak allocated device
memory, on CPU the process's peak resident set size (``ru_maxrss``) next to the resident size just
before sampling (``rss_before_mb``: Python + torch + the loaded model). Timed: the public
:func:`crystalflow.crystal_tasks.prediction.sample_structures` (prior, ODE solve, split into crystals), after one
untimed warm-up (8 structures, 2 steps), repeated until ``--min-seconds`` have passed. Both wall
time (``structures_per_s``) and this process's CPU time (``structures_per_cpu_s``; with one
thread the robust number on a shared machine) are reported.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path

from _memory import current_rss_mb, peak_rss_mb


def _child(args: dict, queue) -> None:
    queue.put(run_one(args))


def run_one(args: dict) -> dict:
    """Time one batch size in this (fresh) process."""
    import torch

    from crystalflow.crystals import load_split
    from crystalflow.crystal_tasks.prediction import sample_structures
    from crystalflow.pretrained import load_pretrained

    torch.set_num_threads(args["threads"])
    device = torch.device(args["device"])
    flow, ckpt = load_pretrained(args["checkpoint"], device=device)
    ds = load_split(args["dataset"] or ckpt.stats["dataset"], "test", args["data_dir"], progress=False)
    rows = [ds.atom_types[int(ds._offsets[i]):int(ds._offsets[i + 1])].tolist()
            for i in range(min(len(ds), args["pool"]))]
    bs = args["batch_size"]

    def chunk(r: int) -> list[list[int]]:
        return [rows[(r * bs + j) % len(rows)] for j in range(bs)]

    sample_structures(flow, chunk(0)[:8], batch_size=bs, device=device, seed=0, steps=2)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    before = current_rss_mb()
    done, reps, t0, c0 = 0, 0, time.perf_counter(), time.process_time()
    while True:
        sample_structures(flow, chunk(reps + 1), batch_size=bs, device=device, seed=reps)
        if device.type == "cuda":
            torch.cuda.synchronize()
        done += bs
        reps += 1
        secs = time.perf_counter() - t0
        if secs >= args["min_seconds"] and reps >= args["min_repeats"]:
            break
    cpu = time.process_time() - c0
    out = {"batch_size": bs, "repeats": reps, "seconds": round(secs, 3),
           "structures_per_s": round(done / secs, 3), "cpu_seconds": round(cpu, 3),
           "structures_per_cpu_s": round(done / cpu, 3)}
    if device.type == "cuda":
        out["peak_device_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    out["rss_before_mb"] = round(before, 1)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="csp_mp_20.pt", help="path or bundled name")
    ap.add_argument("--dataset", default=None, help="default: the checkpoint's dataset")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 64, 512])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cuda" if _cuda() else "cpu")
    ap.add_argument("--min-seconds", type=float, default=5.0)
    ap.add_argument("--min-repeats", type=int, default=1)
    ap.add_argument("--pool", type=int, default=1024, help="test rows the compositions cycle over")
    ap.add_argument("--label", default="", help="free text copied to the output (e.g. before/after)")
    args = ap.parse_args()
    from crystalflow.checkpoint import load_checkpoint
    from crystalflow.pretrained import resolve_checkpoint

    import crystalflow
    from crystalflow.crystals import load_split

    ckpt = load_checkpoint(resolve_checkpoint(args.checkpoint, "csp"))
    load_split(args.dataset or ckpt.stats["dataset"], "test", args.data_dir, progress=False)  # cache
    results = []
    ctx = mp.get_context("spawn")
    for bs in args.batch_sizes:
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=({**vars(args), "batch_size": bs}, queue))
        proc.start()
        results.append(queue.get())
        proc.join()
    tc = ckpt.task_config
    print(json.dumps({
        "bench": "sampling", "label": args.label, "code": str(Path(crystalflow.__file__).parent),
        "checkpoint": args.checkpoint,
        "dataset": args.dataset or ckpt.stats["dataset"], "device": args.device,
        "threads": args.threads, "steps": tc["steps"], "method": tc["method"],
        "anti_annealing_frac": tc.get("anti_annealing_frac", 0.0), "results": results,
    }))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
