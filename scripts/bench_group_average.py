"""Benchmark batched group averaging on 64 MP-20 test crystals (conventional cells).

Measures, for a per-atom fractional vector field:
  * batched group averaging (crystalflow.symmetry.group_average_vectors, pair form), forward and
    forward+backward, and its per-(operation, atom) entry form;
  * the per-structure Python-loop reference (group_average_vectors_loop);
  * the naive symmetrisation: call the network once per operation on transformed inputs, rotate
    the outputs back and average (frame averaging), versus one network call + batched averaging;
  * overhead_fraction: averaging (forward+backward) / a whole training step (network forward +
    averaging + loss + backward) at batch 64.

The network is the real one: ``crystalflow.models.SGNet`` (CSPNet with space-group and Wyckoff
embeddings, width 128 x 4 layers, dense graph inside each crystal), built by ``make_network``; the
training step is the real one: ``SGCSPFlow.loss`` (symmetric prior, Wyckoff-parameter path, network,
group averaging, family projection of the lattice, loss) plus backward at batch 64.
``--stand-in`` restores the earlier stand-in MLP for comparison.

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


class RealNetwork(nn.Module):
    """``SGNet`` behind the benchmark's ``net(frac, lattice, atoms, batch)`` signature.

    ``atoms`` are *global atom indices* into the full batch (the naive frame averaging passes the
    subset of atoms it transforms), so each atom keeps its type and Wyckoff embedding; the lattice
    parameters go through the flow's chart; time is 0.5 for every crystal.
    """

    def __init__(self, flow, sym: SymmetryBatch, types: torch.Tensor) -> None:
        super().__init__()
        self.flow = flow
        self.model = flow.model
        self.sym = sym
        self.types = types

    def forward(self, frac, lattice, atoms, batch):  # noqa: D102 - see class docstring
        from crystalflow.models.conditions import Conditions

        num_atoms = torch.bincount(batch)
        nf = self.model.node_features(self.sym).index_select(0, atoms)
        cond = Conditions(atom_types=self.types[atoms], batch=batch, num_atoms=num_atoms,
                          node_features=nf)
        z = self.flow.chart.to_z(lattice.double()).to(frac.dtype)
        t = torch.full((num_atoms.shape[0],), 0.5, dtype=frac.dtype)
        return self.model.net({"frac": frac, "lattice": z}, t, cond)["frac"]


def make_flow(lattice: torch.Tensor, sym: SymmetryBatch, width: int = 128, layers: int = 4):
    """The real space-group conditioned flow (untrained weights; timing only)."""
    from crystalflow.models import SGNet, SGNetConfig
    from crystalflow.crystal_tasks.sgcsp import SGCSPFlow
    from crystalflow.symmetry import family_lattice_chart

    torch.manual_seed(0)
    chart = family_lattice_chart(lattice.double(), sym.space_group)
    return SGCSPFlow(SGNet(SGNetConfig(hidden=width, layers=layers)), chart)


def make_network(flow=None, sym=None, types=None, stand_in: bool = False) -> Network:
    """The network being symmetrised: the real SGNet (default) or the earlier stand-in MLP."""
    torch.manual_seed(0)
    if stand_in:
        return StandInNetwork(128, 4)
    return RealNetwork(flow, sym, types)


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
    parser.add_argument("--stand-in", action="store_true", help="the old stand-in MLP network")
    parser.add_argument("--width", type=int, default=128, help="SGNet hidden width")
    parser.add_argument("--layers", type=int, default=4, help="SGNet message-passing layers")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    crystals, sym, frac, lattice, types, collate_seconds = load_batch(args.batch, args.seed)
    batch = sym.batch
    flow = make_flow(lattice, sym, args.width, args.layers)
    net = make_network(flow, sym, types, stand_in=args.stand_in)
    atoms = types if args.stand_in else torch.arange(frac.shape[0])
    v = torch.randn_like(frac)

    with torch.no_grad():
        t_avg = timed(lambda: group_average_vectors(v, sym), args.repeats)
        t_entries = timed(lambda: group_average_vectors_entries(v, sym), args.repeats)
        layouts = [c.symmetry for c in crystals]
        t_loop = timed(lambda: group_average_vectors_loop(v, layouts), args.repeats)
        t_net = timed(lambda: net(frac, lattice, atoms, batch), max(3, args.repeats // 4))
        ours = group_average_vectors(net(frac, lattice, atoms, batch), sym)
        start = time.perf_counter()
        naive = naive_average(net, frac, lattice, atoms, sym)
        t_naive = time.perf_counter() - start
        max_diff = float((naive - ours).abs().max())

    v_req = v.clone().requires_grad_(True)
    weights = torch.randn_like(v)

    def averaging_fwd_bwd() -> None:
        (group_average_vectors(v_req, sym) * weights).sum().backward()

    t_avg_fb = timed(averaging_fwd_bwd, args.repeats)
    target = torch.randn_like(frac)

    from crystalflow.crystals.symmetric import symmetric_batch

    crystal_batch = symmetric_batch(frac, lattice, types, [c.symmetry for c in crystals])
    gen = torch.Generator().manual_seed(args.seed)

    def train_step() -> None:
        if args.stand_in:
            net.zero_grad(set_to_none=True)
            pred = group_average_vectors(net(frac, lattice, atoms, batch), sym)
            ((pred - target) ** 2).mean().backward()
        else:
            flow.model.zero_grad(set_to_none=True)
            flow.loss(crystal_batch, generator=gen).total.backward()

    t_step = timed(train_step, max(3, args.repeats // 4))

    def symmetric_prior_and_path() -> None:
        x0 = flow.prior(sym, generator=gen)
        flow.path(x0, crystal_batch, torch.rand(crystal_batch.num_crystals, generator=gen))

    t_prior_path = 0.0 if args.stand_in else timed(symmetric_prior_and_path, args.repeats)

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
        "prior_and_path_ms": round(1e3 * t_prior_path, 3),
        "symmetry_overhead_fraction_incl_prior_path": round((t_avg_fb + t_prior_path) / t_step, 4),
        "overhead_reference": (
            "stand-in MLP message passing (width 128 x 4 layers, dense graph), forward + averaging "
            "+ MSE + backward" if args.stand_in else
            f"real training step: SGCSPFlow.loss (SGNet width {args.width} x {args.layers} layers, "
            "dense graph; prior, path, group averaging, lattice projection, loss) + backward"),
        "collate_symmetry_ms": round(1e3 * collate_seconds, 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:32s} {value}")


if __name__ == "__main__":
    main()
