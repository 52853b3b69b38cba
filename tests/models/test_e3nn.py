"""Symmetries of the e3nn vector field, through the package's equivariance helpers.

What each test covers:
* rotation: ``L -> L R^T`` with the same fractional coordinates rotates the Cartesian output and
  leaves the fractional velocity, the lattice-chart velocity and the pooled scalars unchanged;
* permutation of atoms within their crystals permutes the per-atom outputs;
* lattice change (another unit cell of the same crystal, ``L' = M L``, ``f' = f M^{-1}`` with
  integer ``M``, det +-1: axis reorderings, sign flips and shears): the Cartesian field and the
  pooled invariant scalars are identical and the fractional field transforms as ``v M^{-1}``. The
  lattice-chart velocity is NOT covered: it is a velocity of (log lengths, logit angles) of the
  given cell, which a change of cell changes (the head sees those chart coordinates by design).
"""

from __future__ import annotations

import functools

import pytest
import torch

from crystalflow.crystal_tasks.csp import CSPConfig, CSPFlow
from crystalflow.manifolds import LatticeChart
from crystalflow.models import Conditions, E3NNConfig, E3NNNet, build_model
from crystalflow.models.e3nn_net import adaptive_radius_graph
from crystalflow.testing import (
    assert_lattice_change_equivariant, assert_permutation_equivariant, assert_rotation_equivariant,
    default_dtype, random_rotation, random_unimodular,
)

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


@functools.lru_cache(maxsize=None)
def _model(dtype: torch.dtype) -> E3NNNet:
    """A small network (built once per dtype: e3nn's code generation takes seconds)."""
    torch.manual_seed(0)
    with default_dtype(dtype):
        model = E3NNNet(E3NNConfig(hidden=16, layers=2, vectors=4)).eval()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # a non-trivial chart so lattice outputs are not those of the unit chart
        model.chart_mean.copy_(torch.randn(6, generator=g, dtype=torch.float64) * 0.3 + 1.0)
        model.chart_std.copy_(torch.rand(6, generator=g, dtype=torch.float64) + 0.5)
    return model


def _crystals(dtype: torch.dtype):
    """Three crystals: triclinic (5 atoms), a one-atom cubic cell, a flat slab-like cell (4 atoms)."""
    g = torch.Generator().manual_seed(1)
    lattice = torch.tensor([
        [[4.1, 0.0, 0.0], [0.9, 3.7, 0.0], [-0.6, 0.8, 5.3]],
        [[2.5, 0.0, 0.0], [0.0, 2.5, 0.0], [0.0, 0.0, 2.5]],
        [[3.0, 0.1, 0.0], [-0.4, 2.9, 0.0], [0.3, -0.2, 14.0]],
    ], dtype=torch.float64)
    num_atoms = torch.tensor([5, 1, 4])
    batch = torch.repeat_interleave(torch.arange(3), num_atoms)
    frac = torch.rand(10, 3, generator=g, dtype=torch.float64)
    types = torch.tensor([8, 8, 26, 3, 1, 29, 6, 6, 14, 8])
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    return frac.to(dtype), lattice.to(dtype), types, batch, num_atoms, t.to(dtype)


def _field(model: E3NNNet, batch: torch.Tensor, num_atoms: torch.Tensor, t: torch.Tensor):
    def f(frac, lattice, types):
        out = model.field(frac, lattice, t, Conditions(atom_types=types, batch=batch, num_atoms=num_atoms))
        return {"cart": out.cart, "frac": out.frac, "lattice": out.lattice, "pooled": out.pooled}
    return f


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rotation_equivariance(dtype):
    model = _model(dtype)
    frac, lattice, types, batch, num_atoms, t = _crystals(dtype)
    f = _field(model, batch, num_atoms, t)
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        assert_rotation_equivariant(f, frac, lattice, types, random_rotation(g, dtype), TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_permutation_equivariance(dtype):
    model = _model(dtype)
    frac, lattice, types, batch, num_atoms, t = _crystals(dtype)
    perm = torch.tensor([3, 0, 4, 2, 1, 5, 8, 6, 9, 7])  # within each crystal
    assert_permutation_equivariant(_field(model, batch, num_atoms, t), frac, lattice, types, perm,
                                   TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_unit_cell_change_equivariance(dtype):
    model = _model(dtype)
    frac, lattice, types, batch, num_atoms, t = _crystals(dtype)
    f = _field(model, batch, num_atoms, t)
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        change = torch.stack([random_unimodular(g, dtype) for _ in range(3)])
        assert_lattice_change_equivariant(f, frac, lattice, types, batch, change, TOL[dtype],
                                          invariant=("pooled",))


def test_lattice_change_test_can_fail():
    """The helper detects a field that is not cell-independent (one that reads raw frac coords)."""
    frac, lattice, types, batch, num_atoms, t = _crystals(torch.float64)

    def bad(frac, lattice, types):
        return {"cart": torch.sin(6.283 * frac) @ lattice[0]}  # depends on the cell choice

    change = torch.stack([torch.tensor([[1.0, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)] * 3)
    with pytest.raises(AssertionError, match="lattice change"):
        assert_lattice_change_equivariant(bad, frac, lattice, types, batch, change, 1e-10)


def test_translation_and_periodic_images_leave_the_field_unchanged():
    model = _model(torch.float64)
    frac, lattice, types, batch, num_atoms, t = _crystals(torch.float64)
    f = _field(model, batch, num_atoms, t)
    out = f(frac, lattice, types)
    g = torch.Generator().manual_seed(4)
    shifted = frac + torch.rand(3, 1, 3, generator=g, dtype=torch.float64)[batch, 0]
    imaged = frac + torch.randint(-2, 3, frac.shape, generator=g).double()
    for other in (shifted, imaged):
        o = f(other, lattice, types)
        for key in out:
            torch.testing.assert_close(o[key], out[key], atol=1e-10, rtol=0)


def test_batched_equals_separate_and_forward_matches_field():
    model = _model(torch.float64)
    frac, lattice, types, batch, num_atoms, t = _crystals(torch.float64)
    z = model.matrix_to_chart(lattice)
    cond = Conditions(atom_types=types, batch=batch, num_atoms=num_atoms)
    out = model({"frac": frac, "lattice": z}, t, cond)
    for i in range(3):
        sel = batch == i
        ci = Conditions(atom_types=types[sel], batch=torch.zeros(int(sel.sum()), dtype=torch.long),
                        num_atoms=num_atoms[i:i + 1])
        oi = model.field(frac[sel], lattice[i:i + 1], t[i:i + 1], ci)
        # forward rebuilds L from z in the canonical orientation: fractional outputs agree
        torch.testing.assert_close(oi.frac, out["frac"][sel], atol=1e-10, rtol=0)
        torch.testing.assert_close(oi.lattice, out["lattice"][i:i + 1], atol=1e-10, rtol=0)


def test_every_atom_has_a_neighbour_even_in_extreme_cells():
    """Long thin cells and isolated atoms: the guard radius always reaches the nearest image."""
    g = torch.Generator().manual_seed(6)
    lattice = torch.tensor([
        [[1.5, 0.0, 0.0], [0.0, 1.5, 0.0], [0.0, 0.0, 40.0]],   # needle, one atom
        [[30.0, 0.0, 0.0], [0.0, 30.0, 0.0], [0.0, 0.0, 1.2]],  # flat, one atom
        [[8.0, 0.0, 0.0], [0.0, 8.0, 0.0], [0.0, 0.0, 8.0]],    # a tight pair far from a lone atom
    ], dtype=torch.float64)
    frac = torch.tensor([[0.1, 0.2, 0.3], [0.7, 0.1, 0.5], [0.0, 0.0, 0.0], [0.01, 0.0, 0.0],
                         [0.5, 0.5, 0.5]], dtype=torch.float64)
    num_atoms = torch.tensor([1, 1, 3])
    batch = torch.repeat_interleave(torch.arange(3), num_atoms)
    graph, radius = adaptive_radius_graph(frac, lattice, batch, num_atoms, cutoff_factor=1.0, guard=1.5)
    degree = torch.bincount(graph.dst, minlength=5)
    assert (degree > 0).all(), degree
    assert (graph.lengths < radius).all()
    # and a random batch from the lattice prior (standard normal chart) of a non-trivial chart
    model = _model(torch.float64)
    z = torch.randn(16, 6, generator=g, dtype=torch.float64)
    n = torch.randint(1, 21, (16,), generator=g)
    b = torch.repeat_interleave(torch.arange(16), n)
    f = torch.rand(int(n.sum()), 3, generator=g, dtype=torch.float64)
    graph, _ = adaptive_radius_graph(f, model.chart_to_matrix(z), b, n, 2.0, 1.5)
    assert (torch.bincount(graph.dst, minlength=f.shape[0]) > 0).all()


def test_flow_loss_gradients_and_checkpoint_round_trip(tmp_path):
    from crystalflow.checkpoint import load_checkpoint, save_checkpoint
    from crystalflow.crystals.batch import CrystalBatch
    from crystalflow.crystals.lattice import lattice_matrix_to_params
    from crystalflow.pretrained import csp_flow_from_checkpoint, make_csp_checkpoint

    frac, lattice, types, batch, num_atoms, t = _crystals(torch.float32)
    params = lattice_matrix_to_params(lattice.double())
    chart = LatticeChart.fit(params)
    model = build_model("e3nn", {"hidden": 16, "layers": 2})
    flow = CSPFlow(model, chart, CSPConfig())
    torch.testing.assert_close(model.chart_mean, chart.mean)  # the flow hands its chart over
    cb = CrystalBatch(frac=frac, lattice=params.float(), atom_types=types, batch=batch, num_atoms=num_atoms)
    loss = flow.loss(cb, generator=torch.Generator().manual_seed(0))
    loss.total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ckpt = make_csp_checkpoint(flow, "e3nn", {"lattice_chart": chart.state_dict()}, weights, None)
    save_checkpoint(ckpt, tmp_path / "e3nn.pt")
    loaded = csp_flow_from_checkpoint(load_checkpoint(tmp_path / "e3nn.pt"))
    assert isinstance(loaded.model, E3NNNet)
    cond = Conditions(atom_types=types, batch=batch, num_atoms=num_atoms)
    x = {"frac": frac, "lattice": chart.to_z(params).float()}
    model.eval()
    a, b = model(x, t, cond), loaded.model(x, t, cond)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)
    sample = loaded.sample(cond, steps=3, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(sample.frac).all() and torch.isfinite(sample.lattice).all()


def test_chart_points_that_are_no_cell_are_repaired_and_proper_cells_kept():
    """Three 120-degree angles have volume 0: the network pulls them towards 90 degrees; proper
    cells (every MP-20 cell has V / abc >= 0.707) pass unchanged."""
    from crystalflow.models.e3nn_net import MIN_VOLUME_RATIO, repair_angles, volume_ratio

    params = torch.tensor([[3.0, 4.0, 5.0, 120.0, 120.0, 120.0], [3.0, 4.0, 5.0, 80.0, 95.0, 112.0],
                           [3.0, 3.0, 3.0, 60.0, 60.0, 121.0]], dtype=torch.float64)
    fixed = repair_angles(params)
    assert volume_ratio(params)[0] < 1e-6 and volume_ratio(params)[2] == 0
    assert (volume_ratio(fixed) >= MIN_VOLUME_RATIO).all()
    torch.testing.assert_close(fixed[1], params[1], atol=0, rtol=0)
    torch.testing.assert_close(fixed[:, :3], params[:, :3], atol=0, rtol=0)
    model = _model(torch.float64)
    lattice = model.chart_to_matrix(model.matrix_to_chart(torch.diag_embed(params[:, :3])) * 0 + 3.0)
    assert (torch.linalg.det(lattice).abs() > 0).all()


def test_default_sizes_are_per_network():
    """Without --hidden/--layers every network gets its own CPU-sized default (e3nn 64x3, the
    size of the comparison), and given values win."""
    from crystalflow.models import DEFAULT_SIZES, default_size

    assert default_size("e3nn") == {"hidden": 64, "layers": 3}
    assert default_size("cspnet") == {"hidden": 128, "layers": 4}
    assert default_size("e3nn", hidden=32) == {"hidden": 32, "layers": 3}
    assert set(DEFAULT_SIZES) >= {"cspnet", "sgnet", "dngnet", "e3nn"}
    model = build_model("e3nn", default_size("e3nn"))
    assert model.config.hidden == 64 and model.config.layers == 3
    with pytest.raises(ValueError):
        default_size("nope")


def test_default_csp_network_is_the_comparison_winner():
    from crystalflow.models import default_csp_network

    assert default_csp_network("perov_5") == "e3nn"
    assert default_csp_network("mp_20") == "cspnet"
    assert default_csp_network(None) == "cspnet"  # the user's own data
