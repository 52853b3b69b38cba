"""Benchmark batched group averaging on 64 MP-20 test crystals (conventional cells).

Measures, for a per-atom fractional vector field:
  * batched group averaging (crystalflow.symmetry.group_average_vectors, pair form), forward and
    forward+backward, and its per-(operation, atom) entry form;
  * the per-structure Python-loop reference (group_average_vectors_loop);
  * the naive symmetrisation: call the network once per operation on transformed inputs, rotate
    the outputs back and average (frame averaging), versus one network call + batched averaging;
  * overhead_fraction: averaging (forward+backward) / a whole training step (network forward +
    averaging + loss + backward) at batch 64.

The network is one function, ``make_network``: a stand-in MLP message-passing network (width 128,
4 layers, dense graph inside each crystal) until ``crystalflow.models`` provides the real one; swap
it there and every number follows.

Usage: python scripts/bench_group_average.py --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from pymatgen.core import Structure
from torch import nn

from crystalflow.symmetry import (
    SymmetryBatch,
    analyze_structure,
    collate_symmetry,
    group_average_vectors,
    group_average_vectors_loop,
)
from crystalflow.symmetry.average import group_average_vectors_entries

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mp_20" / "test.csv.gz"

#: ``net(frac [N,3], lattice [B,6], atom_types [N], batch [N]) -> velocity [N,3]``
Network = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class StandInNetwork(nn.Module):
    """MLP message passing over all atom pairs of each crystal (CSPNet-like cost).

    Node features: atom-type embedding. Edge features: Fourier features of fractional differences
    and the crystal's lattice parameters. Each of ``layers`` layers: edge MLP (2 linear) -> mean
    aggregation -> node MLP (2 linear) with residual. Head: linear to 3 (fractional velocity).
    Permutation-equivariant, so frame averaging and group averaging give the same field.
    """

    def __init__(self, width: int = 128, layers: int = 4, frequencies: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(119, width)
        self.register_buffer("freqs", 2 * torch.pi * torch.arange(1, frequencies + 1).float())
        edge_in = 2 * width + 6 * frequencies + 6
        self.edge = nn.ModuleList(
            nn.Sequential(nn.Linear(edge_in, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU())
            for _ in range(layers)
        )
        self.node = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * width, width), nn.SiLU(), nn.Linear(width, width))
            for _ in range(layers)
        )
        self.head = nn.Linear(width, 3)

    def forward(self, frac, lattice, atom_types, batch):  # noqa: D102 - see class docstring
        counts = torch.bincount(batch)
        start = torch.cumsum(counts, 0) - counts
        # Dense graph inside each crystal: all ordered pairs (i, j), built without a Python loop.
        per_atom = counts[batch]
        src = torch.repeat_interleave(torch.arange(len(batch)), per_atom)
        offsets = torch.arange(len(src)) - torch.repeat_interleave(
            torch.cumsum(per_atom, 0) - per_atom, per_atom
        )
        dst = start[batch[src]] + offsets
        diff = frac[dst] - frac[src]
        angles = diff[..., None] * self.freqs.to(frac.dtype)
        fourier = torch.cat([torch.sin(angles), torch.cos(angles)], -1).flatten(1)
        edge_static = torch.cat([fourier, lattice[batch[src]] / 10.0], -1)
        h = self.embed(atom_types).to(frac.dtype)
        norm = counts[batch].to(frac.dtype)[:, None]
        for edge_mlp, node_mlp in zip(self.edge, self.node):
            m = edge_mlp(torch.cat([h[src], h[dst], edge_static], -1))
            agg = torch.zeros_like(h).index_add_(0, src, m) / norm
            h = h + node_mlp(torch.cat([h, agg], -1))
        return self.head(h)


def make_network(width: int = 128, layers: int = 4) -> Network:
    """The network being symmetrised. Swap in the real model from ``crystalflow.models`` here."""
    torch.manual_seed(0)
    return StandInNetwork(width, layers)


def load_batch(rows: int, seed: int):
    """Analyse ``rows`` MP-20 test crystals; return tensors of their conventional cells."""
    frame = pd.read_csv(DATA, usecols=["cif"]).sample(n=rows, random_state=seed)
    crystals = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cif in frame["cif"]:
            crystals.append(analyze_structure(Structure.from_str(cif, fmt="cif")))
    start = time.perf_counter()
    sym = collate_symmetry([c.symmetry for c in crystals])
    collate_seconds = time.perf_counter() - start
    frac = torch.cat([torch.as_tensor(c.frac) for c in crystals]).float()
    lattice = torch.stack([torch.as_tensor(c.lattice) for c in crystals]).float()
    types = torch.cat([c.symmetry.atom_types for c in crystals])
    return crystals, sym, frac, lattice, types, collate_seconds


def timed(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def naive_average(net: Network, frac, lattice, types, sym: SymmetryBatch) -> torch.Tensor:
    """Frame averaging: one network call per operation index on the transformed crystals.

    Call ``k`` transforms every crystal with more than ``k`` operations by its ``k``-th operation,
    runs the network on those crystals, rotates the output back by ``R_k^{-1}`` and accumulates.
    """
    batch = sym.batch
    op_start = torch.cumsum(sym.num_ops, 0) - sym.num_ops
    out = torch.zeros_like(frac)
    for k in range(int(sym.num_ops.max())):
        active = sym.num_ops > k
        atoms = active[batch]
        sub_batch = torch.cumsum(active.long(), 0)[batch[atoms]] - 1
        op = (op_start + k)[batch[atoms]]
        rot = sym.op_rot[op].to(frac.dtype)
        moved = torch.einsum("nij,nj->ni", rot, frac[atoms]) + sym.op_trans[op].to(frac.dtype)
        moved = moved - torch.floor(moved)
        v = net(moved, lattice[active], types[atoms], sub_batch)
        out[atoms] += torch.einsum("nij,nj->ni", sym.op_rot_inv[op].to(frac.dtype), v)
    return out * sym.atom_inv_num_ops.to(frac.dtype)[:, None]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (machine is shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    crystals, sym, frac, lattice, types, collate_seconds = load_batch(args.batch, args.seed)
    batch = sym.batch
    net = make_network()
    v = torch.randn_like(frac)

    with torch.no_grad():
        t_avg = timed(lambda: group_average_vectors(v, sym), args.repeats)
        t_entries = timed(lambda: group_average_vectors_entries(v, sym), args.repeats)
        layouts = [c.symmetry for c in crystals]
        t_loop = timed(lambda: group_average_vectors_loop(v, layouts), args.repeats)
        t_net = timed(lambda: net(frac, lattice, types, batch), max(3, args.repeats // 4))
        ours = group_average_vectors(net(frac, lattice, types, batch), sym)
        start = time.perf_counter()
        naive = naive_average(net, frac, lattice, types, sym)
        t_naive = time.perf_counter() - start
        max_diff = float((naive - ours).abs().max())

    v_req = v.clone().requires_grad_(True)
    weights = torch.randn_like(v)

    def averaging_fwd_bwd() -> None:
        (group_average_vectors(v_req, sym) * weights).sum().backward()

    t_avg_fb = timed(averaging_fwd_bwd, args.repeats)
    target = torch.randn_like(frac)

    def train_step() -> None:
        net.zero_grad(set_to_none=True)
        pred = group_average_vectors(net(frac, lattice, types, batch), sym)
        ((pred - target) ** 2).mean().backward()

    t_step = timed(train_step, max(3, args.repeats // 4))

    result = {
        "batch_crystals": args.batch,
        "atoms_conventional": int(frac.shape[0]),
        "permutation_entries": int(sym.entry_src.shape[0]),
        "averaging_pairs": int(sym.pair_src.shape[0]),
        "max_ops": int(sym.num_ops.max()),
        "threads": torch.get_num_threads(),
        "dtype": "float32",
        "group_average_ms": round(1e3 * t_avg, 3),
        "group_average_fwd_bwd_ms": round(1e3 * t_avg_fb, 3),
        "group_average_per_entry_form_ms": round(1e3 * t_entries, 3),
        "loop_ms": round(1e3 * t_loop, 3),
        "speedup_vs_loop": round(t_loop / t_avg, 1),
        "network_forward_ms": round(1e3 * t_net, 2),
        "naive_frame_averaging_ms": round(1e3 * t_naive, 1),
        "naive_network_calls": int(sym.num_ops.max()),
        "ours_network_plus_average_ms": round(1e3 * (t_net + t_avg), 2),
        "speedup_vs_naive": round(t_naive / (t_net + t_avg), 1),
        "naive_vs_ours_max_abs_diff": max_diff,
        "train_step_ms": round(1e3 * t_step, 2),
        "overhead_fraction": round(t_avg_fb / t_step, 4),
        "overhead_reference": "stand-in MLP message passing (width 128 x 4 layers, dense graph), "
        "forward + averaging + MSE + backward; swap make_network for crystalflow.models",
        "collate_symmetry_ms": round(1e3 * collate_seconds, 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:32s} {value}")


if __name__ == "__main__":
    main()
