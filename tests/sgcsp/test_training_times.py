"""The space-group flow draws its training times through :func:`crystalflow.paths.sample_times`
(``SGCSPConfig.t_late_fraction``, ``train --t-late-fraction``)."""

from __future__ import annotations

from dataclasses import replace

import torch

from crystalflow.crystal_tasks.sgcsp import SGCSPConfig

from tests.sgcsp.conftest import make_flow


def _times_seen(flow, dataset, seed: int = 0) -> torch.Tensor:
    seen = []
    path = flow.path

    def spy(x0, batch, t):
        seen.append(t.clone())
        return path(x0, batch, t)

    flow.path = spy
    b = dataset.batch(range(len(dataset)), dtype=torch.float64)
    out = flow.loss(b, generator=torch.Generator().manual_seed(seed))
    assert torch.isfinite(out.total)
    return torch.cat(seen)


def test_late_times_reach_the_loss_and_uniform_times_are_unchanged(dataset):
    flow = make_flow(dataset=dataset)
    uniform = _times_seen(flow, dataset)
    g = torch.Generator().manual_seed(0)  # the default: the prior's draws, then plain U(0, 1)
    flow.prior(dataset.batch(range(len(dataset)), dtype=torch.float64).symmetry, dtype=torch.float64, generator=g)
    assert torch.equal(uniform, torch.rand(len(dataset), generator=g, dtype=torch.float64))
    late = make_flow(dataset=dataset)
    late.config = replace(SGCSPConfig(), t_late_fraction=1.0, t_late_min=0.9)
    t = _times_seen(late, dataset)
    assert float(t.min()) >= 0.9 and float(t.max()) <= 1.0
