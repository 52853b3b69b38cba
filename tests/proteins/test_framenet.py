"""The frame network is SE(3)-equivariant: rigid motions of the input frames move the predicted
frames and translation updates with them and leave scalar outputs unchanged; padding is inert."""

from __future__ import annotations

import torch

from crystalflow.manifolds.so3 import random_rotations
from crystalflow.proteins.frames import centre

from .conftest import rigid_motion


def _inputs(seed: int, b: int = 2, n: int = 12):
    g = torch.Generator().manual_seed(seed)
    rots = random_rotations((b, n), g, torch.float64)
    trans = torch.randn(b, n, 3, generator=g, dtype=torch.float64)
    mask = torch.ones(b, n, dtype=torch.bool)
    if b > 1:
        mask[1, n - 3:] = False
    t = torch.rand(b, generator=g, dtype=torch.float64)
    return rots, trans, t, mask


def test_outputs_are_invariant_and_updates_equivariant(tiny_flow):
    model = tiny_flow.model.double()
    rots, trans, t, mask = _inputs(0)
    q, s = rigid_motion(1)
    out = model(rots, trans, t, mask)
    moved = model(q @ rots, trans @ q.T + s, t, mask)
    # local-frame outputs and residue features are invariant scalars / local vectors
    assert torch.allclose(moved.rot, out.rot, atol=1e-9)
    assert torch.allclose(moved.trans, out.trans, atol=1e-9)
    assert torch.allclose(moved.features, out.features, atol=1e-9)
    assert out.rot.abs().max() > 1e-3  # the test is not vacuous


def test_predicted_frames_and_velocities_move_with_the_input(tiny_flow):
    tiny_flow.model.double()
    rots, trans, t, mask = _inputs(2)
    trans = centre(trans, mask)
    q, s = rigid_motion(3)
    upd, x1 = tiny_flow.predict({"rots": rots, "trans": trans}, t, mask)
    upd2, x1b = tiny_flow.predict({"rots": q @ rots, "trans": trans @ q.T + s}, t, mask)
    m = mask[..., None]
    assert torch.allclose(x1b["rots"], q @ x1["rots"], atol=1e-9)
    assert torch.allclose(x1b["trans"] * m, (x1["trans"] @ q.T + s) * m, atol=1e-9)
    assert torch.allclose(upd2["trans"], upd["trans"] @ q.T, atol=1e-9)  # rotates, ignores s
    assert torch.allclose(upd2["rots"], upd["rots"], atol=1e-9)  # body frame: invariant
    v, v2 = (tiny_flow.velocity(x, t, mask) for x in ({"rots": rots, "trans": trans},
                                                      {"rots": q @ rots, "trans": trans @ q.T + s}))
    assert torch.allclose(v2["trans"], v["trans"] @ q.T, atol=1e-8)


def test_reflections_are_not_a_symmetry(tiny_flow):
    """Chirality matters: mirroring the coordinates changes the prediction."""
    model = tiny_flow.model.double()
    rots, trans, t, mask = _inputs(4)
    p = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    # mirror the backbone atoms and rebuild right-handed frames: R -> P R P
    out = model(rots, trans, t, mask)
    mirrored = model(p @ rots @ p, trans @ p, t, mask)
    assert not torch.allclose(mirrored.features, out.features, atol=1e-6)


def test_padding_does_not_change_real_residues(tiny_flow):
    model = tiny_flow.model.double()
    rots, trans, t, mask = _inputs(5, b=1, n=10)
    g = torch.Generator().manual_seed(6)
    pad_rots = torch.cat([rots, random_rotations((1, 4), g, torch.float64)], 1)
    pad_trans = torch.cat([trans, 9 * torch.randn(1, 4, 3, generator=g, dtype=torch.float64)], 1)
    pad_mask = torch.cat([mask, torch.zeros(1, 4, dtype=torch.bool)], 1)
    a = model(rots, trans, t, mask)
    b = model(pad_rots, pad_trans, t, pad_mask)
    assert torch.allclose(b.rot[:, :10], a.rot, atol=1e-9)
    assert torch.allclose(b.trans[:, :10], a.trans, atol=1e-9)
    assert b.rot[:, 10:].abs().max() == 0 and b.trans[:, 10:].abs().max() == 0
