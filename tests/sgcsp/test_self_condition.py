"""Self-conditioning of the space-group conditioned flow: the network reads its previous estimate
of the clean crystal (``SGNetConfig.self_condition``, ``train --self-condition``)."""

from __future__ import annotations

import pytest
import torch

from crystalflow.crystal_tasks.sgcsp import SGCSPConfig, SGCSPFlow, sg_conditions
from crystalflow.crystal_tasks.training import _continued_model
from crystalflow.flow_checkpoints import make_flow_checkpoint
from crystalflow.models import SGNet, SGNetConfig
from crystalflow.models.cspnet import add_self_condition_columns
from crystalflow.symmetry import collate_symmetry, crystal_symmetry, symmetry_error
from crystalflow.testing import assert_group_equivariant

from tests.sgcsp.conftest import TEMPLATES, make_flow
from tests.sgcsp.test_flow import _assert_same_crystal_up_to_polar_shift

CONFIG = dict(hidden=16, layers=2, time_dim=16, sg_dim=8, wyckoff_dim=8)


def _sc_flow(dataset, seed: int = 0, prob: float = 0.5) -> SGCSPFlow:
    """A self-conditioned flow whose estimate columns are random (so the estimate matters)."""
    base = make_flow(dataset=dataset)
    torch.manual_seed(seed)
    model = SGNet(SGNetConfig(**CONFIG, self_condition=True)).double().eval()
    return SGCSPFlow(model, base.chart, SGCSPConfig(steps=4, self_condition_prob=prob))


def _state(flow, dataset, t: float = 0.4, seed: int = 1):
    b = dataset.batch(range(len(dataset)), dtype=torch.float64)
    x0 = flow.prior(b.symmetry, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    tt = torch.full((b.num_crystals,), t, dtype=torch.float64)
    x_t, target = flow.path(x0, b, tt)
    return b, x_t, target, tt


def test_zero_columns_add_self_conditioning_without_changing_the_function(dataset):
    """A network without self-conditioning, rebuilt with it from a checkpoint (zero estimate
    columns), gives the same field with no estimate and with any estimate."""
    base = make_flow(dataset=dataset, layers=2)
    ck = make_flow_checkpoint("sgcsp", base, "sgnet", {}, base.model.state_dict(), None)
    model = _continued_model(ck, self_condition=True).double().eval()
    assert model.config.self_condition and not base.model.config.self_condition
    flow = SGCSPFlow(model, base.chart, base.config)
    b, x_t, _, t = _state(base, dataset)
    cond = sg_conditions(b.atom_types, b.symmetry)
    want = base.velocity(x_t, t, cond)
    some = {"sc_frac": torch.rand_like(x_t["frac"]), "sc_lattice": torch.randn_like(x_t["lattice"])}
    for inputs in (x_t, {**x_t, **some}):
        got = flow.velocity(inputs, t, cond)
        for k in ("frac", "lattice"):
            assert torch.allclose(got[k], want[k], atol=1e-12), k


def test_columns_are_added_only_where_the_target_is_wider():
    small = SGNet(SGNetConfig(**CONFIG)).state_dict()
    wide = SGNet(SGNetConfig(**CONFIG, self_condition=True)).state_dict()
    out = add_self_condition_columns(small, wide)
    assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in wide.items()}
    changed = [k for k in small if small[k].shape != out[k].shape]
    assert changed and all(k.endswith("edge_mlp.0.weight") for k in changed)
    for k in changed:
        assert torch.equal(out[k][:, :small[k].shape[1]], small[k])
        assert not out[k][:, small[k].shape[1]:].any()


def test_the_estimate_is_read_and_the_field_stays_symmetric_and_translation_invariant(dataset):
    flow = _sc_flow(dataset)
    b, x_t, target, t = _state(flow, dataset)
    sym = b.symmetry
    cond = sg_conditions(b.atom_types, sym)
    est = flow.clean_estimate(x_t, target, t, sym)  # a symmetric estimate (the path's endpoint)
    with torch.no_grad():
        plain = flow.velocity(x_t, t, cond)["frac"]
        v = flow.velocity({**x_t, **est}, t, cond)["frac"]
        assert float((v - plain).abs().max()) > 1e-6  # the estimate changes the field
        assert_group_equivariant(v, sym, atol=1e-9, what="self-conditioned field")
        # one translation of every crystal's atoms and of its estimate leaves the field unchanged
        shift = torch.tensor([0.13, -0.41, 0.27], dtype=torch.float64)
        moved = {"frac": x_t["frac"] + shift, "lattice": x_t["lattice"],
                 "sc_frac": est["sc_frac"] + shift, "sc_lattice": est["sc_lattice"]}
        raw = flow.model({**x_t, **est}, t, cond)["frac"]
        assert torch.allclose(flow.model(moved, t, cond)["frac"], raw, atol=1e-10)


@pytest.mark.parametrize("t", [0.0, 0.35, 0.9])
def test_the_estimate_of_the_path_velocity_is_the_data(dataset, t):
    """Along the straight conditional path, ``x_t + (1 - t) u_t`` is the path's end: the data
    crystal (up to the polar shift the drift-free path allows), the data lattice in the chart."""
    flow = make_flow(dataset=dataset)
    b, x_t, target, tt = _state(flow, dataset, t=t)
    est = flow.clean_estimate(x_t, target, tt, b.symmetry)
    _assert_same_crystal_up_to_polar_shift(est["sc_frac"], b.frac, b.symmetry, dataset.templates)
    assert torch.allclose(est["sc_lattice"], flow.chart.to_z(b.lattice), atol=1e-9)


def test_training_reaches_the_estimate_columns_only_in_self_conditioned_batches(dataset):
    b = dataset.batch(range(len(dataset)), dtype=torch.float64)
    for prob, reached in ((1.0, True), (0.0, False)):
        flow = _sc_flow(dataset, prob=prob)
        flow.model.train()
        out = flow.loss(b, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(out.total)
        out.total.backward()
        hid = CONFIG["hidden"]
        width = flow.model.net.layers[0].edge_mlp[0].weight.shape[1]
        extra = width - (2 * hid + 6 + 60)
        grad = flow.model.net.layers[0].edge_mlp[0].weight.grad[:, width - extra:]
        assert bool(grad.abs().max() > 0) is reached, prob


def test_sampling_feeds_each_evaluation_the_previous_estimate_and_stays_symmetric(dataset):
    flow = _sc_flow(dataset)
    seen: list[bool] = []
    model = flow.model

    class Spy(torch.nn.Module):
        config = model.config

        def forward(self, x, t, cond):
            seen.append("sc_frac" in x and "sc_lattice" in x)
            return model(x, t, cond)

    flow.model = Spy()
    sym = collate_symmetry([crystal_symmetry(tm) for tm in TEMPLATES])
    errors = []
    flow.sample(TEMPLATES, steps=5, method="midpoint", symmetrize=False, dtype=torch.float64,
                generator=torch.Generator().manual_seed(2),
                callback=lambda s, t: errors.append(float(symmetry_error(s["frac"], sym).max())))
    assert seen == [False] + [True] * 9  # 5 midpoint steps: 10 evaluations
    assert max(errors) < 1e-9
    # the estimate matters: ignoring it changes the samples
    flow.model = model
    a = flow.sample(TEMPLATES, steps=5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    flow.self_conditioned = False
    c = flow.sample(TEMPLATES, steps=5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert float((a.frac - c.frac).abs().max()) > 1e-6

