"""Growing a trained space-group flow by message-passing layers (``train --task sgcsp
--init-from CKPT --layers L`` with L above the checkpoint's): the deeper network starts as the
same function and its new layers learn."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from crystalflow.checkpoint import save_checkpoint
from crystalflow.crystal_tasks.sgcsp import sg_conditions
from crystalflow.errors import InputError
from crystalflow.flow_checkpoints import make_flow_checkpoint
from crystalflow.models import SGNet, SGNetConfig
from crystalflow.models.cspnet import add_identity_layers
from crystalflow.pretrained import TASKS

from tests.core.test_distributed_tasks import CRYSTAL_OPTIONS, tiny_data

CONFIG = dict(hidden=16, layers=1, time_dim=16, sg_dim=8, wyckoff_dim=8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 1-layer sgcsp checkpoint with random (not zero) weights, and the tiny data."""
    data = tiny_data()
    built = TASKS["sgcsp"].training.build(data, CRYSTAL_OPTIONS)
    torch.manual_seed(5)
    with torch.no_grad():
        for p in built.flow.model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("grow") / "sg.pt"
    save_checkpoint(make_flow_checkpoint("sgcsp", built.flow, "sgnet", built.stats,
                                         built.flow.model.state_dict(), None), path)
    return path, built.flow, data


def _field(flow, data, seed: int = 2):
    b = data.train.batch(range(len(data.train)), dtype=torch.float64)
    x0 = flow.prior(b.symmetry, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    t = torch.linspace(0.05, 0.95, b.num_crystals, dtype=torch.float64)
    x_t, target = flow.path(x0, b, t)
    return b, x_t, target, t


@pytest.mark.parametrize("self_condition", [False, True])
def test_a_deeper_network_from_a_checkpoint_computes_the_same_field(trained, self_condition):
    path, first, data = trained
    options = replace(CRYSTAL_OPTIONS, init_from=str(path), layers=3, self_condition=self_condition)
    grown = TASKS["sgcsp"].training.build(data, options).flow
    assert grown.model.config.layers == 3 and grown.model.config.self_condition is self_condition
    first.model.double().eval()
    grown.model.double().eval()
    b, x_t, _, t = _field(first, data)
    cond = sg_conditions(b.atom_types, b.symmetry)
    with torch.no_grad():
        want = first.velocity(x_t, t, cond)
        got = grown.velocity(x_t, t, cond)
    for k in ("frac", "lattice"):
        assert float(want[k].abs().max()) > 1e-3  # a field that is not trivially zero
        assert torch.allclose(got[k], want[k], atol=1e-12), k


def test_the_added_layers_learn(trained):
    """The zero last linear of an added layer gets a gradient, and one SGD step makes the
    layer differ from the identity."""
    path, _, data = trained
    flow = TASKS["sgcsp"].training.build(data, replace(CRYSTAL_OPTIONS, init_from=str(path), layers=2)).flow
    flow.model.double().train()
    b = data.train.batch(range(len(data.train)), dtype=torch.float64)
    flow.loss(b, generator=torch.Generator().manual_seed(0)).total.backward()
    added = flow.model.net.layers[1].node_mlp[2]
    assert not added.weight.any()
    assert float(added.weight.grad.abs().max()) > 1e-8
    with torch.no_grad():
        added.weight -= 0.1 * added.weight.grad
    h = torch.randn(5, CONFIG["hidden"], dtype=torch.float64)
    edges = torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 4])
    feat = torch.randn(4, flow.model.net.layers[1].edge_mlp[0].weight.shape[1] - 2 * CONFIG["hidden"],
                       dtype=torch.float64)
    with torch.no_grad():
        assert not torch.allclose(flow.model.net.layers[1](h, *edges, feat), h)


def test_a_shallower_or_wider_request_is_refused(trained):
    path, _, data = trained
    with pytest.raises(InputError, match="layers >= 1"):
        TASKS["sgcsp"].training.build(data, replace(CRYSTAL_OPTIONS, init_from=str(path), layers=0))
    with pytest.raises(InputError, match="hidden 32 differs"):
        TASKS["sgcsp"].training.build(data, replace(CRYSTAL_OPTIONS, init_from=str(path), hidden=32))


def test_identity_layers_are_added_only_after_the_trained_ones():
    small = SGNet(SGNetConfig(**CONFIG)).state_dict()
    deep = SGNet(SGNetConfig(**{**CONFIG, "layers": 3})).state_dict()
    out = add_identity_layers(small, deep)
    assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in deep.items()}
    assert all(torch.equal(out[k], v) for k, v in small.items())
    added = [k for k in deep if k not in small]
    assert added and all(k.startswith(("net.layers.1.", "net.layers.2.")) for k in added)
    zero = [k for k in added if ".node_mlp.2." in k]
    assert len(zero) == 4 and all(not out[k].any() for k in zero)
    with pytest.raises(ValueError, match="more than depth"):  # a new key outside the layers
        add_identity_layers(small, {**deep, "net.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="more than depth"):  # a trained key the target lacks
        add_identity_layers({**small, "net.gone.weight": torch.zeros(1)}, deep)
