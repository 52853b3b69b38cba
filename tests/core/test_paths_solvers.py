"""Paths hit their endpoints; their velocity integrates to the data; solvers converge."""

from __future__ import annotations

import math

import pytest
import torch

from crystalflow.manifolds import Euclidean, FlatTorus
from crystalflow.paths import GeodesicPath, ProductPath
from crystalflow.solvers import integrate, nfe
from crystalflow.testing import manifold_cases


@pytest.mark.parametrize("case", manifold_cases(), ids=lambda c: c.name)
def test_path_endpoints(case):
    g = torch.Generator().manual_seed(0)
    x0, x1 = case.random_point(32, g), case.random_point(32, g)
    path = GeodesicPath(case.manifold)
    at0 = path.sample(x0, x1, torch.zeros(32, dtype=torch.float64))
    at1 = path.sample(x0, x1, torch.ones(32, dtype=torch.float64))
    assert case.manifold.dist(at0.x_t, x0).max() < 1e-9
    assert case.manifold.dist(at1.x_t, x1).max() < 1e-9


@pytest.mark.parametrize("case", manifold_cases(), ids=lambda c: c.name)
@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_target_velocity_integrates_to_x1(case, method):
    """Integrating the path's target velocity u_t(x_t | x0, x1) from x0 lands on x1."""
    g = torch.Generator().manual_seed(1)
    x0, x1 = case.random_point(16, g), case.random_point(16, g)
    m = case.manifold
    path = GeodesicPath(m)

    def velocity(x, t):
        return {"x": path.sample(x0, x1, t.expand(16)).dx_t}

    out = integrate(velocity, {"x": x0}, {"x": m}, steps=10, method=method)
    assert m.dist(out["x"], x1).max() < 1e-9


def test_path_velocity_is_the_time_derivative():
    m = FlatTorus(3)
    g = torch.Generator().manual_seed(2)
    x0, x1 = torch.rand(8, 3, generator=g, dtype=torch.float64), torch.rand(8, 3, generator=g, dtype=torch.float64)
    path = GeodesicPath(m)
    t = torch.full((8,), 0.3, dtype=torch.float64)
    h = 1e-6
    s = path.sample(x0, x1, t)
    fd = m.logmap(s.x_t, path.sample(x0, x1, t + h).x_t) / h
    assert torch.allclose(fd, s.dx_t, atol=1e-6)


def test_product_path_samples_each_field_with_its_time():
    pp = ProductPath({"frac": GeodesicPath(FlatTorus(3)), "lattice": GeodesicPath(Euclidean(6))})
    x0 = {"frac": torch.zeros(5, 3), "lattice": torch.zeros(2, 6)}
    x1 = {"frac": torch.full((5, 3), 0.2), "lattice": torch.ones(2, 6)}
    t = {"frac": torch.tensor([0.0, 0.5, 1.0, 1.0, 1.0]), "lattice": torch.tensor([0.25, 1.0])}
    s = pp.sample(x0, x1, t)
    assert torch.allclose(s["frac"].x_t[:, 0], torch.tensor([0.0, 0.1, 0.2, 0.2, 0.2]))
    assert torch.allclose(s["lattice"].x_t[:, 0], torch.tensor([0.25, 1.0]))


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_solver_is_exact_on_a_constant_field(method):
    x0 = {"f": torch.tensor([[0.9, 0.2, 0.0]], dtype=torch.float64), "l": torch.zeros(1, 6, dtype=torch.float64)}
    v = {"f": torch.tensor([[0.3, -0.5, 0.25]], dtype=torch.float64), "l": torch.ones(1, 6, dtype=torch.float64)}
    out = integrate(lambda x, t: v, x0, {"f": FlatTorus(3), "l": Euclidean(6)}, steps=7, method=method)
    assert torch.allclose(out["f"], torch.tensor([[0.2, 0.7, 0.25]], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(out["l"], torch.ones(1, 6, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("method,order", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_solver_convergence_order(method, order):
    """dx/dt = x cos(t) has x(1) = x0 exp(sin 1); the error falls as h^order."""
    m = Euclidean(1)
    x0 = {"x": torch.ones(1, 1, dtype=torch.float64)}
    exact = math.exp(math.sin(1.0))
    errs = []
    for steps in (8, 16):
        out = integrate(lambda x, t: {"x": x["x"] * torch.cos(t)}, x0, {"x": m}, steps, method)
        errs.append(abs(out["x"].item() - exact))
    rate = math.log2(errs[0] / errs[1])
    assert rate == pytest.approx(order, abs=0.3)


def test_nfe_counts_and_bad_method():
    assert (nfe("euler", 10), nfe("midpoint", 10), nfe("rk4", 10)) == (10, 20, 40)
    with pytest.raises(ValueError):
        integrate(lambda x, t: x, {"x": torch.zeros(1, 1)}, {"x": Euclidean(1)}, 2, "heun")


def test_anti_annealing_scales_velocity_late():
    seen = []
    integrate(lambda x, t: {"x": torch.ones(1, 1)}, {"x": torch.zeros(1, 1)}, {"x": Euclidean(1)},
              steps=2, method="euler", anti_annealing={"x": 2.0},
              callback=lambda x, t: seen.append(float(x["x"])))
    # steps at t=0 (scale 1) and t=0.5 (scale 2), each of length 0.5
    assert seen == pytest.approx([0.5, 1.5])


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_projection_hook_runs_after_every_step_and_stage(method):
    """The hook sees every point the solver moves to (steps and intermediate stages), and with a
    projection onto a line the flow never leaves the line."""
    calls = []

    def onto_diagonal(x):
        calls.append(x["x"].clone())
        return {"x": x["x"].mean(-1, keepdim=True).expand_as(x["x"])}

    x0 = {"x": torch.zeros(2, 3, dtype=torch.float64)}
    v = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]], dtype=torch.float64)
    out = integrate(lambda x, t: {"x": v}, x0, {"x": Euclidean(3)}, steps=5, method=method,
                    project=onto_diagonal)
    assert len(calls) == nfe(method, 5)
    assert torch.allclose(out["x"], torch.tensor([[2.0] * 3, [1.0] * 3], dtype=torch.float64))


def test_time_is_a_tensor_of_the_state_dtype_and_discrete_fields_need_euler():
    seen = []
    integrate(lambda x, t: seen.append(t) or {"x": torch.zeros_like(x["x"])}, {"x": torch.zeros(1, 1)},
              {"x": Euclidean(1)}, steps=4, method="midpoint", t0=0.5)
    assert all(t.dtype == torch.float32 and t.dim() == 0 for t in seen)
    assert [float(t) for t in seen] == pytest.approx([0.5, 0.5625, 0.625, 0.6875, 0.75, 0.8125, 0.875, 0.9375])
    seen.clear()  # float64 time arithmetic on request, handed over as such
    integrate(lambda x, t: seen.append(t) or {"x": torch.zeros_like(x["x"])}, {"x": torch.zeros(1, 1)},
              {"x": Euclidean(1)}, steps=2, method="rk4", time_dtype=torch.float64)
    assert [t.dtype for t in seen] == [torch.float64] * 8
    with pytest.raises(ValueError, match="Euler"):
        integrate(lambda x, t: x, {"x": torch.zeros(1, 1)}, {"x": Euclidean(1)}, 2, "rk4",
                  discrete={"types": object()})


@pytest.mark.parametrize("fraction, low", [(0.0, 0.8), (0.3, 0.8), (1.0, 0.5)])
def test_training_times_follow_the_late_mixture(fraction, low):
    """``sample_times``: P(t <= s) = (1 - f) s + f max(0, s - m) / (1 - m), checked against the
    empirical CDF (Kolmogorov-Smirnov bound at 99.9%), all in [0, 1]."""
    from crystalflow.paths import sample_times

    n = 40000
    t = sample_times(n, late_fraction=fraction, late_min=low, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(0))
    assert t.shape == (n,) and 0 <= float(t.min()) and float(t.max()) <= 1
    s = torch.linspace(0, 1, 101, dtype=torch.float64)
    want = (1 - fraction) * s + fraction * (s - low).clamp(min=0) / (1 - low)
    got = (t[None, :] <= s[:, None]).double().mean(dim=1)
    assert float((got - want).abs().max()) < 1.95 / math.sqrt(n)


def test_uniform_training_times_are_the_plain_uniform_stream():
    from crystalflow.paths import sample_times

    a = sample_times(64, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, torch.rand(64, generator=torch.Generator().manual_seed(3)))
    for bad in (dict(late_fraction=1.5), dict(late_fraction=0.5, late_min=1.0)):
        with pytest.raises(ValueError):
            sample_times(4, **bad)
