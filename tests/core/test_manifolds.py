"""The shared manifold contract, run over every manifold (geoopt-style), in float64."""

from __future__ import annotations

import pytest
import torch

from crystalflow.manifolds import Euclidean, FlatTorus, LatticeChart
from crystalflow.manifolds.lattice import (
    NIGGLI_ANGLE_WINDOW,
    OPEN_ANGLE_WINDOW,
    params_to_unconstrained,
    unconstrained_to_params,
)
from crystalflow.testing import manifold_cases


@pytest.fixture(params=manifold_cases(), ids=lambda c: c.name)
def case(request):
    return request.param


def test_exp_of_log_returns_the_point(case):
    g = torch.Generator().manual_seed(0)
    x, y = case.random_point(64, g), case.random_point(64, g)
    y_back = case.manifold.expmap(x, case.manifold.logmap(x, y))
    assert case.manifold.dist(y_back, y).max() < 1e-9


def test_log_of_exp_returns_small_vectors(case):
    g = torch.Generator().manual_seed(1)
    x = case.random_point(64, g)
    u = case.random_tangent(x, g, scale=0.08)  # inside the injectivity radius
    assert torch.allclose(case.manifold.logmap(x, case.manifold.expmap(x, u)), u, atol=1e-9)


def test_projections_are_idempotent(case):
    g = torch.Generator().manual_seed(2)
    x = case.random_point(32, g)
    amb = x + 3.0 * torch.randn(x.shape, generator=g, dtype=x.dtype)
    p = case.manifold.projx(amb)
    assert torch.allclose(case.manifold.projx(p), p, atol=1e-12)
    ok, reason = case.manifold.check_point(p)
    assert ok, reason
    u = torch.randn(case.tangent_shape(x), generator=g, dtype=x.dtype)
    pu = case.manifold.proju(p, u)
    assert torch.allclose(case.manifold.proju(p, pu), pu, atol=1e-12)


def test_batched_equals_looped(case):
    g = torch.Generator().manual_seed(3)
    x, y = case.random_point(8, g), case.random_point(8, g)
    batched = case.manifold.logmap(x, y)
    looped = torch.stack([case.manifold.logmap(x[i], y[i]) for i in range(8)])
    assert torch.allclose(batched, looped, atol=1e-12)


def test_distance_is_symmetric_and_zero_on_diagonal(case):
    g = torch.Generator().manual_seed(4)
    x, y = case.random_point(16, g), case.random_point(16, g)
    assert torch.allclose(case.manifold.dist(x, y), case.manifold.dist(y, x), atol=1e-9)
    assert case.manifold.dist(x, x).abs().max() < 1e-9


def test_float32_agrees_with_float64_reference(case):
    g = torch.Generator().manual_seed(5)
    x, y = case.random_point(16, g), case.random_point(16, g)
    ref = case.manifold.logmap(x, y)
    low = case.manifold.logmap(x.float(), y.float()).double()
    assert torch.allclose(low, ref, atol=1e-5)


def test_torus_log_is_shortest_wrapped_displacement():
    t = FlatTorus(3)
    x = torch.tensor([[0.95, 0.1, 0.5]], dtype=torch.float64)
    y = torch.tensor([[0.05, 0.9, 0.5]], dtype=torch.float64)
    assert torch.allclose(t.logmap(x, y), torch.tensor([[0.1, -0.2, 0.0]], dtype=torch.float64))
    assert torch.allclose(t.expmap(x, t.logmap(x, y)), y)


def test_lattice_chart_round_trip_and_standardisation():
    g = torch.Generator().manual_seed(0)
    lengths = 3 + 5 * torch.rand(200, 3, generator=g, dtype=torch.float64)
    angles = 60 + 60 * torch.rand(200, 3, generator=g, dtype=torch.float64)
    params = torch.cat([lengths, angles], -1)
    assert torch.allclose(unconstrained_to_params(params_to_unconstrained(params)), params, atol=1e-9)
    chart = LatticeChart.fit(params)
    z = chart.to_z(params)
    assert torch.allclose(z.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(z.std(0), torch.ones(6, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(chart.to_params(z), params, atol=1e-9)
    again = LatticeChart.from_state_dict(chart.state_dict())
    assert torch.allclose(again.to_z(params), z)


def test_pooled_chart_with_open_window_keeps_tied_coordinates_tied():
    """Conventional cells: angles up to 180 degrees round-trip, statistics are shared by the three
    lengths and the three angles (fixed angles left out), so tied lengths stay tied in the chart."""
    g = torch.Generator().manual_seed(1)
    a = 3 + 4 * torch.rand(50, 1, generator=g, dtype=torch.float64)
    c = 4 + 8 * torch.rand(50, 1, generator=g, dtype=torch.float64)
    beta = 90 + 45 * torch.rand(50, 1, generator=g, dtype=torch.float64)
    right = torch.full_like(a, 90.0)
    params = torch.cat([a, a, c, right, beta, right], -1)  # a = b tied; alpha, gamma fixed
    free = torch.tensor([False, True, False]).expand(50, 3)
    chart = LatticeChart.fit(params, angle_window=OPEN_ANGLE_WINDOW, pooled=True, free_angles=free)
    z = chart.to_z(params)
    assert torch.equal(z[:, 0], z[:, 1]) and torch.equal(chart.mean[:3], chart.mean[:1].expand(3))
    assert z[:, 4].mean().abs() < 1e-9 and (z[:, 4].std() - 1).abs() < 1e-9  # fitted on beta only
    assert torch.allclose(chart.to_params(z), params, atol=1e-9)
    assert torch.allclose(chart.angle_to_z(right[:, 0]), z[:, 3])
    wide = torch.tensor([[5.0, 5.0, 5.0, 90.0, 134.0, 120.0]], dtype=torch.float64)
    assert torch.allclose(chart.to_params(chart.to_z(wide)), wide, atol=1e-9)  # outside (59, 121)


def test_chart_state_dicts_round_trip_and_read_the_older_formats():
    pooled = LatticeChart.pooled(1.9, 0.2, 0.3, 0.4)
    again = LatticeChart.from_state_dict(pooled.state_dict())
    assert again.angle_window == OPEN_ANGLE_WINDOW and torch.equal(again.mean, pooled.mean)
    older = {"length_mean": 1.9, "length_std": 0.2, "angle_mean": 0.3, "angle_std": 0.4,
             "angle_lo": 0.0, "angle_hi": 180.0}  # space-group checkpoints before the one chart
    old = LatticeChart.from_state_dict(older)
    assert torch.equal(old.mean, pooled.mean) and torch.equal(old.std, pooled.std)
    assert old.angle_window == pooled.angle_window
    p1 = LatticeChart.from_state_dict({"mean": [0.0] * 6, "std": [1.0] * 6})  # P1 checkpoints
    assert p1.angle_window == NIGGLI_ANGLE_WINDOW
