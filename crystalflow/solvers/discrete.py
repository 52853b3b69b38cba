"""Discrete Euler steps for categorical fields on mixture paths (:mod:`crystalflow.paths.discrete`).

With the network's posterior ``p_{1|t}(. | x_t)``, the marginal rate of a mixture path is
``u_t(y | x) = lambda_t (p_{1|t}(y | x) - delta_x(y))`` with ``lambda_t = kappa'_t / (1 - kappa_t)``.
One Euler step of size ``h`` keeps a token with probability ``1 - h lambda_t`` and otherwise
redraws it from the posterior. We use the exact integral of the conditional rate over the step,
``(kappa_{t+h} - kappa_t) / (1 - kappa_t)``, as the jump probability (equal to ``h lambda_t`` to
first order, never above 1, exactly 1 on the last step, so every masked token is filled at t = 1).
For the masked source only masked tokens jump (exact: the true posterior of an unmasked token is
the token itself).
"""

from __future__ import annotations

import torch

from crystalflow.paths.discrete import MixturePath

__all__ = ["discrete_euler_step", "sample_categorical"]


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[M, V]`` probabilities (rows sum to 1) -> ``[M]`` long samples."""
    if probs.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=probs.device)
    return torch.multinomial(probs.double().clamp_min(0), 1, generator=generator).squeeze(1)


def discrete_euler_step(
    x: torch.Tensor, posterior: torch.Tensor, path: MixturePath, t: float | torch.Tensor, h: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Advance tokens from ``t`` to ``t + h``.

    Args:
        x: ``[M]`` long tokens at ``t``.
        posterior: ``[M, V]`` probabilities ``p_{1|t}(. | x_t)`` (zero on disallowed values).
        path: the mixture path (source, scheduler).
        t: time (float or ``[M]``); h: step size.
        generator: random generator (the draw order is fixed, so a seed reproduces the run).

    Returns:
        ``[M]`` long tokens at ``t + h``.
    """
    tt = torch.as_tensor(t, dtype=torch.float64, device=x.device).expand(x.shape)
    p_jump = path.jump_probability(tt, h)
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64, device=x.device)
    proposal = sample_categorical(posterior, generator)
    jump = u < p_jump
    if path.masked:
        jump = jump & (x == path.source.mask_index)
    return torch.where(jump, proposal, x)
