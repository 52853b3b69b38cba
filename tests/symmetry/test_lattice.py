"""Crystal-family lattice projections."""

from __future__ import annotations

import math

import pytest
import torch

from crystalflow.errors import InputError
from crystalflow.manifolds import OPEN_ANGLE_WINDOW
from crystalflow.manifolds.lattice import angles_to_logit
from crystalflow.symmetry import (
    family_lattice_chart,
    lattice_constraint,
    lattice_violation,
    project_lattice,
    project_lattice_tangent,
)

GROUPS = torch.tensor([1, 2, 5, 14, 62, 70, 88, 139, 148, 166, 186, 194, 198, 225, 227])


def _random_params(n: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    lengths = 3 + 5 * torch.rand(n, 3, generator=g, dtype=dtype)
    angles = 60 + 60 * torch.rand(n, 3, generator=g, dtype=dtype)
    return torch.cat([lengths, angles], dim=1)


def test_projection_satisfies_each_family():
    p = project_lattice(_random_params(len(GROUPS)), GROUPS)
    a, b, c, al, be, ga = p.unbind(-1)
    for k, n in enumerate(GROUPS.tolist()):
        if n >= 3:
            assert al[k] == 90 and (n >= 16 or be[k] != 90)
        if n >= 16:
            assert al[k] == be[k] == 90
        if 16 <= n <= 142 or n >= 195:
            assert ga[k] == 90
        if n >= 75:
            assert a[k] == b[k]
        if 143 <= n <= 194:
            assert ga[k] == 120
        if n >= 195:
            assert a[k] == b[k] == c[k]
        if n <= 2:
            assert torch.equal(p[k], _random_params(len(GROUPS))[k])
    assert lattice_violation(p, GROUPS).max() < 1e-12


def test_projections_are_idempotent_orthogonal_and_consistent():
    x = _random_params(len(GROUPS))
    v = torch.randn(len(GROUPS), 6, dtype=torch.float64)
    p = project_lattice(x, GROUPS)
    torch.testing.assert_close(project_lattice(p, GROUPS), p, rtol=0, atol=1e-12)
    pv = project_lattice_tangent(v, GROUPS)
    torch.testing.assert_close(project_lattice_tangent(pv, GROUPS), pv, rtol=0, atol=1e-12)
    proj = lattice_constraint(GROUPS).projector
    torch.testing.assert_close(proj, proj.transpose(1, 2))
    # Moving along a projected velocity stays on the constrained set.
    torch.testing.assert_close(
        project_lattice(p + 0.3 * pv, GROUPS), p + 0.3 * pv, rtol=0, atol=1e-12
    )
    # Any representation transformed per parameter: log-lengths and radians.
    rep = torch.cat([x[:, :3].log(), torch.deg2rad(x[:, 3:])], dim=1)
    prep = project_lattice(rep, GROUPS, angle_transform=torch.deg2rad)
    back = torch.cat([prep[:, :3].exp(), torch.rad2deg(prep[:, 3:])], dim=1)
    assert lattice_violation(back, GROUPS).max() < 1e-9
    assert math.isclose(float(prep[GROUPS.tolist().index(166), 5]), 2 * math.pi / 3)


def test_float32_and_dtype_preserved():
    x = _random_params(len(GROUPS), torch.float32)
    p = project_lattice(x, GROUPS)
    assert p.dtype == torch.float32 and lattice_violation(p, GROUPS).max() < 1e-5


def test_bad_space_group_raises():
    with pytest.raises(InputError, match="1 to 230"):
        project_lattice(_random_params(2), torch.tensor([1, 231]))


def test_family_chart_is_pooled_over_free_angles_and_projections_commute_with_it():
    """Statistics of the free angles only (beta of the monoclinic cells, all three of the
    triclinic), and lattices projected in the chart satisfy their family."""
    sg = torch.tensor([1, 14, 14, 225, 194] * 8)
    params = project_lattice(_random_params(len(sg)), sg)
    chart = family_lattice_chart(params, sg)
    assert chart.angle_window == OPEN_ANGLE_WINDOW
    free = torch.cat([params[sg == 1, 3:].reshape(-1), params[sg == 14, 4]])
    logits = angles_to_logit(free, *OPEN_ANGLE_WINDOW)
    assert torch.allclose(chart.mean[3:], logits.mean().expand(3)) and torch.allclose(chart.std[3], logits.std())
    z = chart.to_z(_random_params(len(sg)))
    in_chart = chart.to_params(lattice_constraint(sg).project(z, chart.angle_to_z))
    assert float(lattice_violation(in_chart, sg).max()) < 1e-9
