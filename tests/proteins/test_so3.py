"""SO(3): Exp / Log against scipy, stability near 0 and pi, the Haar prior, and the shared contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from crystalflow.manifolds.so3 import (
    SO3, hat, matrix_to_quaternion, quaternion_to_matrix, random_rotations, so3_exp,
    so3_log, vee,
)
from crystalflow.testing import manifold_cases, so3_cases


def test_so3_cases_are_registered_with_the_shared_contract():
    names = {c.name for c in manifold_cases()}
    assert {c.name for c in so3_cases()} == {"so3", "so3_near_identity"} and {"so3", "so3_near_identity"} <= names


def test_exp_and_log_match_scipy():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(200, 3, generator=g, dtype=torch.float64)
    v = v / v.norm(dim=-1, keepdim=True) * (math.pi * torch.rand(200, 1, generator=g, dtype=torch.float64))
    ref = torch.from_numpy(Rotation.from_rotvec(v.numpy()).as_matrix())
    assert torch.allclose(so3_exp(v), ref, atol=1e-12)
    assert torch.allclose(so3_log(ref), v, atol=1e-9)


def test_hat_vee_and_cross_product():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(10, 3, generator=g), torch.randn(10, 3, generator=g)
    assert torch.allclose((hat(a) @ b[..., None])[..., 0], torch.cross(a, b, dim=-1), atol=1e-6)
    assert torch.allclose(vee(hat(a)), a)


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-5, 1e-3, math.pi - 1e-3, math.pi - 1e-6])
def test_log_is_stable_near_zero_and_pi(angle):
    axis = torch.tensor([0.3, -0.5, 0.81], dtype=torch.float64)
    v = angle * axis / axis.norm()
    r = so3_exp(v)
    out = so3_log(r)
    assert torch.isfinite(out).all()
    assert torch.allclose(so3_exp(out), r, atol=1e-10)
    assert out.norm().item() == pytest.approx(angle, abs=1e-9)


def test_exp_gradient_is_finite_at_zero():
    v = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    so3_exp(v).sum().backward()
    assert torch.isfinite(v.grad).all()
    # d/dv of Exp(v) at 0 is hat(e_i): the gradient of the sum of entries is zero
    assert torch.allclose(v.grad, torch.zeros_like(v))


def test_quaternion_round_trip():
    g = torch.Generator().manual_seed(2)
    r = random_rotations((100,), g, torch.float64)
    assert torch.allclose(quaternion_to_matrix(matrix_to_quaternion(r)), r, atol=1e-12)


def test_uniform_prior_is_haar():
    """Haar measure: rotation angles have density (1 - cos t) / pi, so E[cos t] = -1/2, and
    rotated vectors are uniform on the sphere (mean zero)."""
    g = torch.Generator().manual_seed(3)
    r = SO3().random_uniform((20000,), g, torch.float64)
    ok, reason = SO3().check_point(r, atol=1e-9)
    assert ok, reason
    cos = (torch.diagonal(r, dim1=-2, dim2=-1).sum(-1) - 1) / 2
    assert cos.mean().item() == pytest.approx(-0.5, abs=0.02)
    assert r[:, :, 0].mean(0).abs().max() < 0.03


def test_distance_is_the_rotation_angle_and_bi_invariant():
    g = torch.Generator().manual_seed(4)
    m = SO3()
    x, y, q = (random_rotations((50,), g, torch.float64) for _ in range(3))
    angle = torch.from_numpy(Rotation.from_matrix((x.transpose(-1, -2) @ y).numpy()).magnitude())
    assert torch.allclose(m.dist(x, y), angle, atol=1e-9)
    assert torch.allclose(m.dist(q @ x, q @ y), m.dist(x, y), atol=1e-9)
    assert torch.allclose(m.dist(x @ q, y @ q), m.dist(x, y), atol=1e-9)


def test_body_frame_log_is_left_invariant():
    """logmap(Q x, Q y) = logmap(x, y): global rotations leave body-frame velocities unchanged."""
    g = torch.Generator().manual_seed(5)
    m = SO3()
    x, y, q = (random_rotations((50,), g, torch.float64) for _ in range(3))
    assert torch.allclose(m.logmap(q @ x, q @ y), m.logmap(x, y), atol=1e-9)


def test_geodesic_midpoint_is_equidistant():
    g = torch.Generator().manual_seed(6)
    m = SO3()
    x, y = random_rotations((50,), g, torch.float64), random_rotations((50,), g, torch.float64)
    mid = m.geodesic(x, y, torch.full((50, 1, 1), 0.5, dtype=torch.float64))
    assert torch.allclose(m.dist(x, mid), m.dist(mid, y), atol=1e-9)
    assert torch.allclose(2 * m.dist(x, mid), m.dist(x, y), atol=1e-9)


def test_projx_returns_the_nearest_rotation():
    g = torch.Generator().manual_seed(7)
    r = random_rotations((20,), g, torch.float64)
    noisy = r + 1e-3 * torch.randn(20, 3, 3, generator=g, dtype=torch.float64)
    p = SO3().projx(noisy)
    assert torch.allclose(p.transpose(-1, -2) @ p, torch.eye(3, dtype=torch.float64).expand(20, 3, 3), atol=1e-12)
    assert torch.allclose(torch.det(p), torch.ones(20, dtype=torch.float64))
    assert (p - r).abs().max() < 5e-3
    reflection = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    assert torch.det(SO3().projx(reflection)).item() == pytest.approx(1.0)
    assert np.isfinite(SO3().projx(torch.zeros(3, 3, dtype=torch.float64)).numpy()).all()


def test_quaternion_product_composes_rotations_and_log_inverts_exp():
    from crystalflow.manifolds.so3 import quaternion_log, quaternion_multiply

    g = torch.Generator().manual_seed(8)
    a, b = (torch.nn.functional.normalize(torch.randn(20, 4, generator=g, dtype=torch.float64), dim=-1)
            for _ in range(2))
    assert torch.allclose(quaternion_to_matrix(quaternion_multiply(a, b)),
                          quaternion_to_matrix(a) @ quaternion_to_matrix(b), atol=1e-12)
    assert torch.allclose(so3_exp(quaternion_log(a)), quaternion_to_matrix(a), atol=1e-10)
    assert torch.allclose(quaternion_log(-a), quaternion_log(a), atol=1e-12)
    q = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    quaternion_log(q).sum().backward()
    assert torch.isfinite(q.grad).all()


def test_axis_angle_to_quaternion_matches_exp():
    from crystalflow.manifolds.so3 import axis_angle_to_quaternion

    g = torch.Generator().manual_seed(9)
    v = torch.cat([torch.randn(20, 3, generator=g, dtype=torch.float64), 1e-7 * torch.randn(3, 3, generator=g, dtype=torch.float64)])
    assert torch.allclose(quaternion_to_matrix(axis_angle_to_quaternion(v)), so3_exp(v), atol=1e-12)
