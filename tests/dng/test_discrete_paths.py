"""Discrete mixture paths, schedulers, the discrete Euler sampler and the discrete losses."""

from __future__ import annotations

import math

import pytest
import torch

from crystalflow.losses import discrete_loss
from crystalflow.paths.discrete import (
    SCHEDULERS, KineticOptimalScheduler, MaskSource, MixturePath, UniformSource, make_scheduler,
)
from crystalflow.solvers.discrete import discrete_euler_step
from crystalflow.solvers import JointField, integrate

V = 7
ALLOWED = torch.tensor([False, True, True, True, True, True, True])


def _path(source: str, scheduler: str) -> MixturePath:
    src = MaskSource(0) if source == "mask" else UniformSource()
    return MixturePath(src, make_scheduler(scheduler, src.mass_on_data(ALLOWED)), ALLOWED)


@pytest.mark.parametrize("source", ["mask", "uniform"])
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_paths_hit_endpoints(source, scheduler):
    path = _path(source, scheduler)
    g = torch.Generator().manual_seed(0)
    x1 = torch.randint(1, V, (500,), generator=g)
    x0 = path.sample_source((500,), g)
    if source == "mask":
        assert (x0 == 0).all()
    else:
        assert ALLOWED[x0].all() and len(set(x0.tolist())) == V - 1
    zeros, ones = torch.zeros(500), torch.ones(500)
    assert torch.equal(path.sample(x0, x1, zeros, g).x_t, x0)
    assert torch.equal(path.sample(x0, x1, ones, g).x_t, x1)
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    k = path.scheduler.kappa(t)
    assert abs(float(k[0])) < 1e-12 and abs(float(k[-1]) - 1) < 1e-12
    assert (k[1:] - k[:-1] >= -1e-12).all()
    # derivative matches finite differences
    tm = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    fd = (path.scheduler.kappa(tm + 1e-6) - path.scheduler.kappa(tm - 1e-6)) / 2e-6
    assert torch.allclose(path.scheduler.dkappa(tm), fd, atol=1e-5)
    # the last discrete step fills every token
    assert torch.allclose(path.jump_probability(torch.tensor([0.99]), 0.01), torch.ones(1, dtype=torch.float64))


def test_kinetic_optimal_is_the_sphere_geodesic():
    """sqrt(p_t) moves along the great circle from sqrt(p0) to delta_x1 at constant angular speed."""
    assert torch.allclose(KineticOptimalScheduler(0.0).kappa(torch.tensor([0.3], dtype=torch.float64)),
                          torch.sin(torch.tensor([0.5 * math.pi * 0.3], dtype=torch.float64)) ** 2)
    n = 6
    p0 = torch.full((n,), 1.0 / n, dtype=torch.float64)
    sched = KineticOptimalScheduler(1.0 / n)
    e1 = torch.zeros(n, dtype=torch.float64)
    e1[2] = 1
    omega = math.acos(math.sqrt(1.0 / n))
    for t in (0.1, 0.25, 0.5, 0.8):
        k = float(sched.kappa(torch.tensor(t, dtype=torch.float64)))
        pt = (1 - k) * p0 + k * e1
        angle = math.acos(min(1.0, float((pt.sqrt() * p0.sqrt()).sum())))
        assert abs(angle - t * omega) < 1e-9
    # a linear scheduler is not on the geodesic (the test can fail)
    k = 0.5
    pt = (1 - k) * p0 + k * e1
    assert abs(math.acos(float((pt.sqrt() * p0.sqrt()).sum())) - 0.5 * omega) > 1e-3


@pytest.mark.parametrize("source,scheduler", [("mask", "kinetic_optimal"), ("mask", "linear"),
                                              ("uniform", "kinetic_optimal"), ("uniform", "cosine")])
def test_discrete_euler_reproduces_target(source, scheduler):
    """With the exact posterior the sampler draws from the data distribution (total variation)."""
    path = _path(source, scheduler)
    target = torch.tensor([0, 0.4, 0.05, 0.25, 0.1, 0.15, 0.05], dtype=torch.float64)
    n, steps = 10000, 40
    g = torch.Generator().manual_seed(1)

    def field(state, t):
        tt = t.expand(n)  # a 0-dim float64 tensor: the state holds only tokens
        return JointField(velocities={}, posteriors={"types": path.exact_posterior(state["types"], tt, target)})

    out = integrate(field, {"types": path.sample_source((n,), g)}, {}, steps, discrete={"types": path}, generator=g)
    freq = torch.bincount(out["types"], minlength=V).double() / n
    tv = 0.5 * (freq - target).abs().sum()
    assert tv < 0.03, (freq, tv)
    # and a different posterior gives a different distribution (the check can fail)
    wrong = torch.full((V,), 1.0 / (V - 1), dtype=torch.float64)
    wrong[0] = 0
    out2 = integrate(
        lambda s, t: JointField({}, {"types": path.exact_posterior(s["types"], t.expand(n), wrong)}),
        {"types": path.sample_source((n,), g)}, {}, steps, discrete={"types": path}, generator=g)
    freq2 = torch.bincount(out2["types"], minlength=V).double() / n
    assert 0.5 * (freq2 - target).abs().sum() > 0.1


def test_masked_step_keeps_unmasked_tokens():
    path = _path("mask", "kinetic_optimal")
    x = torch.tensor([0, 3, 0, 5])
    post = torch.zeros(4, V, dtype=torch.float64)
    post[:, 2] = 1
    g = torch.Generator().manual_seed(0)
    out = discrete_euler_step(x, post, path, 0.0, 1.0, g)
    assert out.tolist() == [2, 3, 2, 5]


@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_discrete_losses(source):
    path = _path(source, "kinetic_optimal")
    g = torch.Generator().manual_seed(0)
    x1 = torch.randint(1, V, (300,), generator=g)
    t = torch.rand(300, generator=g)
    x_t = path.sample(path.sample_source((300,), g), x1, t, g).x_t
    random_logits = torch.randn(300, V, generator=g)
    perfect = torch.full((300, V), -30.0)
    perfect[torch.arange(300), x1] = 30.0
    for kind in ("ce", "gkl"):
        bad = discrete_loss(random_logits, x1, x_t, t, path, kind)
        good = discrete_loss(perfect, x1, x_t, t, path, kind)
        assert bad > 0.5 and -1e-6 < good < 1e-6, (kind, bad, good)
    # gradients flow
    logits = random_logits.clone().requires_grad_(True)
    discrete_loss(logits, x1, x_t, t, path, "gkl").backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
