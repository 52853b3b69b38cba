"""Data-parallel training on 2 processes (gloo on localhost) against one process.

One spawn of 2 workers runs every distributed part (process start-up dominates the cost); the
tests then compare what the workers wrote with a single-process computation.
"""

from __future__ import annotations

import gc

import pytest
import torch
from torch_geometric.utils import scatter

from crystalflow.checkpoint import load_checkpoint
from crystalflow.crystals.crystal import Crystal
from crystalflow.crystals.dataset import CrystalDataset
from crystalflow.crystal_tasks.csp import CSPFlow, conditions_of
from crystalflow.distributed import DistInfo, shard
from crystalflow.losses import cfm_loss
from crystalflow.manifolds import LatticeChart
from crystalflow.models import CSPNet, CSPNetConfig
from crystalflow.training import TrainConfig, batch_indices

from tests.core._ddp import join_group, spawn_workers

TINY = CSPNetConfig(hidden=16, layers=2, frequencies=3, time_dim=8)
GRAD_CFG = TrainConfig(batch_size=8, seed=0)
RUN_CFG = TrainConfig(max_steps=4, batch_size=6, lr=1e-2, warmup_steps=10, val_every=2, seed=1)


def make_dataset(equal_sizes: bool, n: int = 16) -> CrystalDataset:
    """Random crystals (fixed seed); 4 atoms each, or 1..6 atoms."""
    g = torch.Generator().manual_seed(11)
    crystals = []
    for i in range(n):
        k = 4 if equal_sizes else 1 + i % 6
        lat = torch.cat([3 + 3 * torch.rand(3, generator=g, dtype=torch.float64),
                         75 + 30 * torch.rand(3, generator=g, dtype=torch.float64)])
        crystals.append(Crystal(torch.rand(k, 3, generator=g, dtype=torch.float64), lat,
                                torch.randint(1, 30, (k,), generator=g), f"c{i}"))
    return CrystalDataset.from_crystals(crystals)


class DataNoiseFlow(CSPFlow):
    """CSPFlow whose prior sample and time are fixed functions of each crystal (no generator):
    a shard then sees exactly the noise its crystals get in the combined batch."""

    def loss(self, batch, generator=None):
        cond = conditions_of(batch)
        x1 = self.targets(batch)
        x0 = {"frac": torch.remainder(batch.frac * 3.7 + 0.2, 1.0),
              "lattice": torch.sin(5.0 * batch.lattice)}
        t = torch.remainder(batch.lattice[:, 0] * 7.31, 1.0)
        ps = self.path.sample(x0, x1, {"frac": t[batch.batch], "lattice": t})
        x_t = {k: p.x_t for k, p in ps.items()}
        pred = self.model(x_t, t, cond)
        return cfm_loss(pred, {k: p.dx_t for k, p in ps.items()}, x_t, self.manifolds,
                        {"frac": 1.0, "lattice": 0.1})


def tiny_flow(cls, ds: CrystalDataset, seed: int) -> CSPFlow:
    torch.manual_seed(seed)
    return cls(CSPNet(TINY), LatticeChart.fit(ds.lattice))


def _worker(rank: int, world: int, port: int, tmp: str) -> None:
    info = join_group(rank, world, port)
    from crystalflow import distributed
    from crystalflow.pretrained import make_csp_checkpoint
    from crystalflow.training import local_loss, train

    try:
        # 1. one step's gradient through DistributedDataParallel
        ds = make_dataset(equal_sizes=True)
        flow = tiny_flow(DataNoiseFlow, ds, seed=rank)  # different init: DDP broadcasts rank 0's
        module = distributed.wrap(flow.model, info)
        out = local_loss(flow, module, ds, 0, GRAD_CFG, info, torch.Generator())
        out.total.backward()
        torch.save({"grads": {n: p.grad for n, p in flow.model.named_parameters()},
                    "params": flow.model.state_dict()}, f"{tmp}/grad{rank}.pt")
        # free the DDP wrapper (and its reducer) while the process group still exists: freed
        # only at return, after cleanup() destroyed the group, gloo's destructor can deadlock
        del module, out
        gc.collect()
        # 2. an uninterrupted 4-step run against 2 steps + resume for 2 more
        ds = make_dataset(equal_sizes=False)

        def run(out_dir: str, steps: int, resume: bool, seed: int) -> None:
            flow = tiny_flow(CSPFlow, ds, seed)
            stats = {"lattice_chart": flow.chart.state_dict(), "dataset": "tiny"}
            cfg = TrainConfig(**{**RUN_CFG.to_dict(), "max_steps": steps})
            train(flow, ds, cfg, out_dir, progress=False, resume=resume, dist_info=info,
                  make_checkpoint=lambda w, s: make_csp_checkpoint(flow, "cspnet", stats, w, s))

        run(f"{tmp}/full", 4, False, seed=0)
        run(f"{tmp}/split", 2, False, seed=0)
        run(f"{tmp}/split", 4, True, seed=5)  # fresh weights: everything must come from last.pt
        distributed.barrier(info)
    finally:
        distributed.cleanup()


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    return spawn_workers(_worker, tmp_path_factory.mktemp("ddp"))


def test_shards_partition_the_global_batch():
    idx = batch_indices(50, 7, 3, 0)
    parts = [shard(idx, DistInfo(rank=r, world_size=3)) for r in range(3)]
    assert sum(parts, []) == idx and sorted(len(p) for p in parts) == [2, 2, 3]
    assert shard(idx, DistInfo()) == idx


def test_two_process_gradients_equal_one_process_on_the_combined_batch(two_process_run):
    ds = make_dataset(equal_sizes=True)
    flow = tiny_flow(DataNoiseFlow, ds, seed=0)
    idx = batch_indices(len(ds), GRAD_CFG.batch_size, 0, GRAD_CFG.seed)
    flow.loss(ds.batch(idx)).total.backward()
    ref = {n: p.grad.clone() for n, p in flow.model.named_parameters()}
    ranks = [torch.load(two_process_run / f"grad{r}.pt") for r in (0, 1)]
    for got in ranks:  # the model rank 1 built (seed 1) was replaced by rank 0's
        for n, v in flow.model.state_dict().items():
            assert torch.equal(got["params"][n], v), n
        for n, g in ref.items():
            torch.testing.assert_close(got["grads"][n], g, rtol=1e-5, atol=1e-7, msg=n)
    # control: one shard alone gives a different gradient, so the agreement is not trivial
    flow.model.zero_grad()
    flow.loss(ds.batch(shard(idx, DistInfo(rank=0, world_size=2)))).total.backward()
    diff = max((p.grad - ref[n]).abs().max().item() for n, p in flow.model.named_parameters())
    assert diff > 1e-4


def test_two_process_resume_continues_the_same_run(two_process_run):
    full = load_checkpoint(two_process_run / "full" / "last.pt")
    split = load_checkpoint(two_process_run / "split" / "last.pt")
    assert full.train_state["step"] == split.train_state["step"] == 4
    assert full.train_state["world_size"] == 2 and len(full.train_state["rng"]) == 2
    start = tiny_flow(CSPFlow, make_dataset(equal_sizes=False), seed=0).model.state_dict()
    moved = 0.0
    for n, v in full.train_state["model"].items():
        torch.testing.assert_close(split.train_state["model"][n], v, rtol=1e-6, atol=1e-7, msg=n)
        torch.testing.assert_close(split.weights[n], full.weights[n], rtol=1e-6, atol=1e-7, msg=n)
        moved = max(moved, (v - start[n]).abs().max().item())
    assert moved > 1e-3  # training did change the weights
    log = (two_process_run / "split" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2", "3", "4"]


def test_split_edge_mlp_equals_the_concatenated_formula():
    """CSPLayer evaluates its first edge layer per atom (and in place); the function is unchanged
    (the fast path the distributed and single-process training and the sampler all run)."""
    from crystalflow.crystals.graph import fully_connected_edges
    from crystalflow.models.cspnet import CSPLayer

    torch.manual_seed(0)
    layer = CSPLayer(12, 7).double()
    src, dst, _ = fully_connected_edges(torch.tensor([3, 5, 1]))
    h = torch.randn(9, 12, dtype=torch.float64)
    e = torch.randn(src.numel(), 7, dtype=torch.float64)
    x = layer.norm(h)
    msg = layer.edge_mlp(torch.cat([x[dst], x[src], e], dim=-1))
    agg = scatter(msg, dst, dim=0, dim_size=9, reduce="mean")
    ref = h + layer.node_mlp(torch.cat([x, agg], dim=-1))
    torch.testing.assert_close(layer(h, src, dst, e), ref, rtol=1e-12, atol=1e-12)
    with torch.no_grad():  # the in-place sampling path
        torch.testing.assert_close(layer(h, src, dst, e), ref, rtol=1e-12, atol=1e-12)
