"""A tiny random DNG checkpoint (no training, no data) for fast tests of sampling and the CLI."""

from __future__ import annotations

import pytest
import torch

from crystalflow.checkpoint import save_checkpoint
from crystalflow.crystal_tasks.dng import DNGConfig, DNGFlow, NUM_TYPES, Skeleton, SkeletonDistribution
from crystalflow.models import build_model
from crystalflow.pretrained import make_dng_checkpoint
from crystalflow.manifolds import LatticeChart

CHART = LatticeChart.pooled(1.9, 0.2, 0.2, 0.38)
ALLOWED_Z = [3, 8, 11, 12, 15, 17, 26, 29]
SKELETONS = SkeletonDistribution(
    (Skeleton(221, ("a", "b")), Skeleton(225, ("a", "b")), Skeleton(225, ("a", "b", "c")),
     Skeleton(225, ("a", "c")), Skeleton(62, ("c", "c", "c"))),
    (1, 3, 2, 1, 2),
)


def tiny_flow(seed: int = 0, **config) -> DNGFlow:
    torch.manual_seed(seed)
    model = build_model("dngnet", {"hidden": 16, "layers": 1, "sg_dim": 4, "wyckoff_dim": 4,
                                   "time_dim": 8, "frequencies": 3})
    allowed = torch.zeros(NUM_TYPES, dtype=torch.bool)
    allowed[ALLOWED_Z] = True
    return DNGFlow(model.eval(), CHART, allowed, DNGConfig(steps=8, **config))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    flow = tiny_flow()
    stats = {"lattice_chart": CHART.state_dict(), "max_atoms": 20, "dataset": "toy", "train_size": 9,
             "cell": "conventional", "symprec": 0.1, "allowed_types": ALLOWED_Z,
             "skeletons": SKELETONS.state_dict()}
    path = tmp_path_factory.mktemp("dng") / "tiny_dng.pt"
    save_checkpoint(make_dng_checkpoint(flow, "dngnet", stats, flow.model.state_dict(), None), path)
    return path
