"""A steric correction of the predicted clean CA positions during sampling (opt-in).

The learned flow predicts the clean frames ``x1_hat`` at every step and moves towards them
(:meth:`BackboneFlow.velocity`). :func:`relax_clashes` takes a few gradient steps on a simple
CA energy before the velocity is formed, for times ``t >= t_min``:

    E = sum_{|i - j| >= 2} relu(r0 - d_ij)^2 + w_b sum_i (d_{i,i+1} - b0)^2

with ``b0 = CA_CA_BOND`` (3.80 A), the radius ``r0`` (default ``CLASH_RADIUS``, 4 A: no native
pair of non-adjacent CA atoms comes closer than about 3.8 A) and the bond weight ``w_b`` (default
1) set per checkpoint (:class:`~crystalflow.proteins.flow.BackboneFlowConfig`). A clash, as the
metrics count it, is a pair under 3.0 A; on the bundled weights a radius just above that
(3.25 A, bond weight 0.5) removes the clashes and keeps more of the secondary structure than
4 A, which also pushes apart close pairs that do not clash (measured in BENCHMARKS.md,
"Protein backbones", session 10). Only translations move; the network re-predicts the
rotations at the next step, so the last steps of the integration reconcile the frames with the
corrected positions. It is a hand-made potential in the spirit of the guiding potentials of
RFdiffusion and Chroma, not part of the learned model, and off unless asked for.
"""

from __future__ import annotations

import torch

#: repulsion radius between CA atoms at sequence separation >= 2 (Angstrom)
CLASH_RADIUS = 4.0
#: target consecutive CA-CA distance (Angstrom)
CA_CA_BOND = 3.80
#: gradient step (Angstrom^2 per unit energy gradient)
STEP_SIZE = 0.1


def clash_energy(ca: torch.Tensor, mask: torch.Tensor, radius: float = CLASH_RADIUS,
                 bond: float = CA_CA_BOND, bond_weight: float = 1.0) -> torch.Tensor:
    """``E [B]`` of CA positions ``ca [B, L, 3]`` (Angstrom) with residue mask ``[B, L]``; the
    bond term is multiplied by ``bond_weight``."""
    m = mask.to(ca.dtype)
    d = torch.cdist(ca, ca)
    n = ca.shape[1]
    idx = torch.arange(n, device=ca.device)
    far = ((idx[None, :] - idx[:, None]) >= 2).to(ca.dtype)  # upper triangle, separation >= 2
    pair = far * m[:, :, None] * m[:, None, :]
    rep = (torch.relu(radius - d) ** 2 * pair).sum((-1, -2))
    step = (ca[:, 1:] - ca[:, :-1]).norm(dim=-1)
    bonds = ((step - bond) ** 2 * m[:, 1:] * m[:, :-1]).sum(-1)
    return rep + bond_weight * bonds


def relax_clashes(ca: torch.Tensor, mask: torch.Tensor, iterations: int,
                  step: float = STEP_SIZE, radius: float = CLASH_RADIUS,
                  bond_weight: float = 1.0) -> torch.Tensor:
    """``iterations`` gradient steps on :func:`clash_energy` with repulsion radius ``radius``
    (Angstrom) and bond-term weight ``bond_weight``: ``ca [B, L, 3]`` (Angstrom) -> corrected
    ``[B, L, 3]``; padding positions are left unchanged."""
    x = ca.detach().clone()
    w = mask.to(ca.dtype).unsqueeze(-1)
    for _ in range(iterations):
        with torch.enable_grad():
            x.requires_grad_(True)
            (g,) = torch.autograd.grad(clash_energy(x, mask, radius, bond_weight=bond_weight).sum(), x)
        x = (x - step * g * w).detach()
    return x
