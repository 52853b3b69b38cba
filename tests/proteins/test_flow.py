"""The backbone flow on the shared core: prior, loss parametrisation (an oracle has zero loss and
samples the data exactly), auxiliary loss, sampling and length checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from crystalflow.errors import InputError
from crystalflow.manifolds.so3 import SO3, random_rotations, so3_log
from crystalflow.models.framenet import FrameNetOutput
from crystalflow.proteins.dataset import collate_backbones
from crystalflow.proteins.flow import BackboneFlow, BackboneFlowConfig
from crystalflow.proteins.frames import atoms_from_frames, centre


def _batch(seed: int = 0, lengths=(20, 14)):
    """Two ideal-geometry random chains (not protein-like, but valid backbones)."""
    g = torch.Generator().manual_seed(seed)
    chains = []
    for n in lengths:
        ca = torch.cumsum(3.8 * nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1), 0)
        chains.append(atoms_from_frames(random_rotations((n,), g), ca))
    return collate_backbones(chains)


class Oracle(nn.Module):
    """Predicts the exact update from x_t to a known x1."""

    def __init__(self, x1: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.x1 = x1

    def forward(self, rots, trans, t, mask):
        rot = so3_log(rots.transpose(-1, -2) @ self.x1["rots"])
        local = torch.einsum("blji,blj->bli", rots, self.x1["trans"] - trans)
        return FrameNetOutput(rot=rot * mask[..., None], trans=local * mask[..., None], features=trans)


def test_prior_is_centred_uniform_and_padded_with_identity():
    flow = BackboneFlow(nn.Identity())
    mask = torch.arange(10)[None] < torch.tensor([[10], [6]])
    x0 = flow.prior(mask, torch.float64, torch.Generator().manual_seed(0))
    ok, reason = SO3().check_point(x0["rots"], atol=1e-9)
    assert ok, reason
    assert torch.allclose(x0["rots"][1, 6:], torch.eye(3, dtype=torch.float64).expand(4, 3, 3))
    assert torch.allclose(x0["trans"].sum(1), torch.zeros(2, 3, dtype=torch.float64), atol=1e-12)
    assert x0["trans"][1, 6:].abs().max() == 0


@pytest.mark.parametrize("align", [True, False])
def test_oracle_has_zero_loss(align):
    batch = _batch()
    flow = BackboneFlow(nn.Identity(), BackboneFlowConfig(align_prior=align, aux_weight=1.0, aux_t_min=0.0))
    flow.model = Oracle(flow.targets(batch))
    out = flow.loss(batch, torch.Generator().manual_seed(1))
    assert out.total.item() < 1e-8
    assert set(out.parts) == {"rots", "trans", "aux"}


def test_oracle_samples_the_data_with_the_shared_solver():
    batch = _batch(2, lengths=(18, 18))
    flow = BackboneFlow(nn.Identity(), BackboneFlowConfig(steps=5, min_length=10))
    x1 = flow.targets(batch)
    flow.model = Oracle(x1)
    frames = flow.sample([18, 18], generator=torch.Generator().manual_seed(3))
    assert SO3().dist(frames.rots, x1["rots"]).max() < 1e-4
    assert (frames.trans - x1["trans"]).abs().max() < 1e-5
    atoms = flow.backbones(frames)
    assert torch.allclose(atoms[0], batch.atoms[0], atol=1e-3)


def test_loss_is_finite_and_trains_every_parameter(tiny_flow):
    batch = _batch(4)
    out = tiny_flow.loss(batch, torch.Generator().manual_seed(5))
    assert torch.isfinite(out.total) and out.total > 0
    out.total.backward()
    missing = [n for n, p in tiny_flow.model.named_parameters() if p.grad is None]
    assert not missing


def test_aux_loss_is_zero_before_its_time_and_positive_after(tiny_flow):
    batch = _batch(6)
    x1 = tiny_flow.targets(batch)
    x1_hat = {"rots": x1["rots"], "trans": x1["trans"] + 0.05}
    shifted = {"rots": x1["rots"], "trans": centre(x1["trans"] + 0.05 * torch.randn_like(x1["trans"]), batch.mask)}
    early = torch.tensor([0.1, 0.2])
    late = torch.tensor([0.9, 0.95])
    assert tiny_flow.aux_loss(shifted, x1, batch.mask, early) == 0
    assert tiny_flow.aux_loss(shifted, x1, batch.mask, late) > 0
    # a rigid translation of the prediction changes atom positions but no distances
    # ... and is weighted by 1 / max(1 - t, 0.1)^2 = 100 for both chains
    assert tiny_flow.aux_loss(x1_hat, x1, batch.mask, late) == pytest.approx(100 * 3 * 0.05**2, rel=1e-4)


def test_sampling_gives_valid_frames_and_atoms(tiny_flow):
    frames = tiny_flow.sample([16, 20], generator=torch.Generator().manual_seed(7))
    ok, reason = SO3().check_point(frames.rots[frames.mask], atol=1e-4)
    assert ok, reason
    atoms = tiny_flow.backbones(frames)
    assert [a.shape for a in atoms] == [(16, 4, 3), (20, 4, 3)]
    assert all(torch.isfinite(a).all() for a in atoms)


@pytest.mark.parametrize("lengths", [[8], [300], [], [64, 1000]])
def test_unsupported_lengths_are_clear_errors(tiny_flow, lengths):
    with pytest.raises(InputError):
        tiny_flow.sample(lengths)


def test_late_time_sampling():
    flow = BackboneFlow(nn.Identity(), BackboneFlowConfig(t_late_fraction=0.5, t_late_min=0.8))
    t = flow.sample_times(20000, torch.float64, torch.Generator().manual_seed(0))
    assert 0 <= t.min() and t.max() <= 1
    assert (t > 0.8).double().mean().item() == pytest.approx(0.5 + 0.5 * 0.2, abs=0.02)
    plain = BackboneFlow(nn.Identity()).sample_times(20000, torch.float64, torch.Generator().manual_seed(0))
    assert (plain > 0.8).double().mean().item() == pytest.approx(0.2, abs=0.02)


def test_aux_distance_term_with_predicted_pairs_penalises_a_predicted_clash():
    """A prediction that puts two residues far apart in the data on top of each other is only
    seen by the distance term when pairs close in the prediction count too."""
    batch = _batch(1)
    x1 = {"rots": batch.rots[:1], "trans": batch.trans[:1] / 10}
    mask = batch.mask[:1]
    far = int(torch.cdist(x1["trans"][0], x1["trans"][0])[0].argmax())
    moved = x1["trans"].clone()
    moved[0, far] = moved[0, 0] + 0.05  # 0.5 A from residue 0
    x1_hat = {"rots": x1["rots"], "trans": moved}
    t = torch.tensor([0.95])
    losses = [BackboneFlow(nn.Identity(), BackboneFlowConfig(aux_t_min=0.5, aux_pred_pairs=p))
              .aux_loss(x1_hat, x1, mask, t) for p in (False, True)]
    assert losses[1] > losses[0] > 0


def test_clash_guidance_separates_overlapping_residues_and_keeps_steps():
    from crystalflow.proteins.guidance import clash_energy, relax_clashes

    k = torch.arange(12, dtype=torch.float64)
    ca = torch.stack([3.8 * k, torch.zeros_like(k), torch.zeros_like(k)], -1)[None]
    ca[0, 9] = ca[0, 2] + torch.tensor([0.5, 0.5, 0.0], dtype=ca.dtype)  # a clash
    ca[0, 8], ca[0, 10] = ca[0, 9] + torch.tensor([0.0, 3.8, 0.0]), ca[0, 9] - torch.tensor([0.0, 3.8, 0.0])
    mask = torch.ones(1, 12, dtype=torch.bool)
    out = relax_clashes(ca, mask, iterations=50)
    assert clash_energy(out, mask) < 0.1 * clash_energy(ca, mask)
    assert torch.linalg.norm(out[0, 9] - out[0, 2]) > 3.0


def test_sampling_with_clash_guidance_is_deterministic_and_valid(tiny_flow):
    a = tiny_flow.sample([16, 20], generator=torch.Generator().manual_seed(7), clash_guidance=3)
    b = tiny_flow.sample([16, 20], generator=torch.Generator().manual_seed(7), clash_guidance=3)
    assert torch.equal(a.trans, b.trans) and torch.isfinite(a.trans).all()
    ok, reason = SO3().check_point(a.rots[a.mask], atol=1e-4)
    assert ok, reason


def test_clash_guidance_radius_only_repels_pairs_inside_it():
    """A non-adjacent pair at 3.5 A with ideal 3.8 A steps: a 4 A radius pushes it apart, a
    3.2 A radius leaves the chain exactly where it was (zero gradient)."""
    from crystalflow.proteins.guidance import relax_clashes

    a = 1.75
    b = (3.8**2 - a**2) ** 0.5
    ca = torch.tensor([[[-a, 0.0, 0.0], [0.0, -b, 0.0], [a, 0.0, 0.0]]], dtype=torch.float64)
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert abs(float(torch.linalg.norm(ca[0, 2] - ca[0, 0])) - 3.5) < 1e-9
    wide = relax_clashes(ca, mask, iterations=20, radius=4.0)
    narrow = relax_clashes(ca, mask, iterations=20, radius=3.2)
    assert float(torch.linalg.norm(wide[0, 2] - wide[0, 0])) > 3.6
    assert torch.allclose(narrow, ca, atol=1e-12)


def test_sampling_clash_radius_defaults_to_the_config(tiny_flow):
    from dataclasses import replace

    def run(flow, **kw):
        return flow.sample([16, 20], generator=torch.Generator().manual_seed(3), clash_guidance=5, **kw).trans

    cfg = tiny_flow.config
    wide = BackboneFlow(tiny_flow.model, replace(cfg, clash_guidance_radius=6.0))
    assert torch.equal(run(wide), run(tiny_flow, clash_radius=6.0))
    assert not torch.equal(run(tiny_flow, clash_radius=6.0), run(tiny_flow, clash_radius=2.0))


def test_clash_guidance_bond_weight_scales_the_bond_term():
    """A straight chain without clashes but one 4.4 A step: weight 0 leaves it alone, weight 1
    moves that step towards 3.8 A."""
    from crystalflow.proteins.guidance import clash_energy, relax_clashes

    x = torch.tensor([0.0, 3.8, 8.2, 12.0], dtype=torch.float64)
    ca = torch.stack([x, torch.zeros_like(x), torch.zeros_like(x)], -1)[None]
    mask = torch.ones(1, 4, dtype=torch.bool)
    assert torch.allclose(clash_energy(ca, mask, bond_weight=0.5), 0.5 * clash_energy(ca, mask))
    assert torch.equal(relax_clashes(ca, mask, iterations=10, bond_weight=0.0), ca)
    moved = relax_clashes(ca, mask, iterations=10, bond_weight=1.0)
    assert float(torch.linalg.norm(moved[0, 2] - moved[0, 1])) < 4.4 - 0.1


def test_clash_loss_counts_close_pairs_per_residue_from_its_time_on():
    """Two straight 12-residue chains (no pair closer than 4 A: zero loss); residue 9 of the
    first put 1 A beside residue 2 adds (4 - 1)^2 (plus 2 x 0.07^2 from residues 1 and 3) per 12
    residues to that chain; the loss is 0 before clash_t_min and its gradient separates the pair."""
    flow = BackboneFlow(nn.Identity(), BackboneFlowConfig(clash_weight=1.0, clash_t_min=0.3))
    k = torch.arange(12, dtype=torch.float64)
    line = torch.stack([0.38 * k, torch.zeros_like(k), torch.zeros_like(k)], -1)  # nm
    trans = torch.stack([line, line + 1.0])
    mask = torch.ones(2, 12, dtype=torch.bool)
    rots = torch.eye(3, dtype=torch.float64).expand(2, 12, 3, 3)
    late, early = torch.tensor([0.5, 0.5]), torch.tensor([0.1, 0.2])
    assert flow.clash_loss({"rots": rots, "trans": trans}, mask, late) == 0
    trans[0, 9] = trans[0, 2] + torch.tensor([0.0, 0.1, 0.0], dtype=torch.float64)
    hat = {"rots": rots, "trans": trans.clone().requires_grad_(True)}
    assert flow.clash_loss(hat, mask, early) == 0
    expected = (9.0 + 2 * (4.0 - (3.8**2 + 1.0) ** 0.5) ** 2) / 12 / 2  # mean over the 2 chains
    loss = flow.clash_loss(hat, mask, late)
    assert float(loss) == pytest.approx(expected, rel=1e-9)
    (g,) = torch.autograd.grad(loss, hat["trans"])
    assert float(g[0, 9] @ (trans[0, 9] - trans[0, 2])) < 0  # descending the loss moves 9 away from 2


def test_loss_reports_the_clash_part_only_when_weighted(tiny_flow):
    from dataclasses import replace

    batch = _batch(4)
    parts = {}
    for w in (0.0, 0.5):
        flow = BackboneFlow(tiny_flow.model, replace(tiny_flow.config, clash_weight=w, clash_t_min=0.0))
        parts[w] = flow.loss(batch, torch.Generator().manual_seed(5))
    assert "clash" not in parts[0.0].parts and parts[0.5].parts["clash"] >= 0
    assert parts[0.5].total.item() == pytest.approx(parts[0.0].total.item() + 0.5 * parts[0.5].parts["clash"], rel=1e-5)
