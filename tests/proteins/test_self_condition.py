"""Self-conditioning of the frame network: the previous prediction enters only through its CA
distances (so the network stays SE(3)-invariant / equivariant), the new input starts at zero (a
network continued with it predicts exactly as before), training uses it and trains it, and the
sampler feeds each step's estimate to the next."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from crystalflow.models.framenet import FrameNet, FrameNetConfig
from crystalflow.proteins.flow import BackboneFlow, BackboneFlowConfig

from .conftest import rigid_motion
from .test_flow import _batch
from .test_framenet import _inputs

SMALL = FrameNetConfig(hidden=32, pair=16, layers=2, heads=2, head_dim=8, query_points=2,
                       value_points=2, time_dim=16)


def _flow(self_condition: bool = True, frame_updates: bool = False, sc_std: float = 0.3,
          prob: float = 0.5) -> BackboneFlow:
    torch.manual_seed(0)
    model = FrameNet(dataclasses.replace(SMALL, self_condition=self_condition, frame_updates=frame_updates))
    torch.nn.init.normal_(model.head[-1].weight, std=0.1)
    if self_condition and sc_std:
        torch.nn.init.normal_(model.sc_pair.weight, std=sc_std)
    return BackboneFlow(model, BackboneFlowConfig(aux_weight=1.0, steps=4, self_condition_prob=prob))


@pytest.mark.parametrize("frame_updates", [False, True])
def test_outputs_are_invariant_when_input_and_previous_prediction_move_together(frame_updates):
    model = _flow(frame_updates=frame_updates).model.double()
    rots, trans, t, mask = _inputs(0)
    sc = trans + 0.3 * torch.randn_like(trans)
    q, s = rigid_motion(1)
    out = model(rots, trans, t, mask, sc_trans=sc)
    # the previous prediction may even move by another rigid motion: only its distances enter
    q2, s2 = rigid_motion(2)
    moved = model(q @ rots, trans @ q.T + s, t, mask, sc_trans=sc @ q2.T + s2)
    assert torch.allclose(moved.rot, out.rot, atol=1e-9)
    assert torch.allclose(moved.trans, out.trans, atol=1e-9)
    # and the input is used: another previous prediction changes the output
    other = model(rots, trans, t, mask, sc_trans=1.5 * sc)
    assert (other.rot - out.rot).abs().max() > 1e-4


def test_a_new_self_conditioning_input_starts_as_the_network_without_it():
    plain = _flow(self_condition=False).model.double()
    added = FrameNet(dataclasses.replace(SMALL, self_condition=True)).double()
    missing, unexpected = added.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["sc_pair.weight"] and not unexpected
    rots, trans, t, mask = _inputs(3)
    a = plain(rots, trans, t, mask)
    b = added(rots, trans, t, mask, sc_trans=trans + 0.2)
    assert torch.equal(a.rot, b.rot) and torch.equal(a.trans, b.trans)


def test_training_uses_and_trains_the_self_conditioning_input():
    batch = _batch(4)
    flow = _flow(prob=1.0)
    calls = []
    forward = flow.model.forward

    def spy(*args, **kwargs):
        calls.append(kwargs.get("sc_trans") is not None)
        return forward(*args, **kwargs)

    flow.model.forward = spy
    out = flow.loss(batch, torch.Generator().manual_seed(5))
    out.total.backward()
    assert calls == [False, True]  # a gradient-free first call, then the conditioned one
    assert flow.model.sc_pair.weight.grad.abs().max() > 0
    calls.clear()
    flow_never = _flow(prob=0.0)  # never: one call
    flow_never.model.forward = spy
    flow_never.loss(batch, torch.Generator().manual_seed(5))
    assert calls == [False]


def test_the_sampler_passes_each_estimate_to_the_next_step():
    flow = _flow()
    seen = []
    forward = flow.model.forward

    def spy(rots, trans, t, mask, sc_trans=None):
        seen.append(None if sc_trans is None else sc_trans.clone())
        return forward(rots, trans, t, mask, sc_trans=sc_trans)

    flow.model.forward = spy
    a = flow.sample([16, 20], generator=torch.Generator().manual_seed(7))
    assert seen[0] is None and all(s is not None for s in seen[1:]) and len(seen) == 4
    flow.model.forward = forward
    b = flow.sample([16, 20], generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.trans, b.trans) and torch.isfinite(a.trans).all()
    # the conditioning changes the samples (the sc weights are non-zero)
    flow_off = _flow(sc_std=0.0)
    c = flow_off.sample([16, 20], generator=torch.Generator().manual_seed(7))
    assert not torch.allclose(a.trans, c.trans, atol=1e-5)
    # switched off at sampling (the ablation), the network never sees an estimate: same as
    # the network whose self-conditioning weights are zero
    seen.clear()
    flow.model.forward = spy
    d = flow.sample([16, 20], generator=torch.Generator().manual_seed(7), self_condition=False)
    assert seen == [None] * 4
    assert torch.allclose(d.trans, c.trans, atol=1e-6)
