"""Flow-matching losses: per-field tangent-space squared error, weighted, with the parts kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from crystalflow.manifolds.base import Manifold


@dataclass(frozen=True)
class LossOutput:
    """``total`` (scalar, differentiable) and each field's unweighted ``parts`` (detached floats)."""

    total: torch.Tensor
    parts: dict[str, float]


def cfm_loss(
    pred: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    points: Mapping[str, torch.Tensor],
    manifolds: Mapping[str, Manifold],
    weights: Mapping[str, float],
) -> LossOutput:
    """Riemannian conditional flow-matching loss ``sum_f w_f E ||v_f - u_f||^2_g``.

    Args:
        pred: field -> ``[M_f, *tangent]`` predicted velocities.
        target: field -> ``[M_f, *tangent]`` conditional path velocities.
        points: field -> ``[M_f, *point]`` where the vectors live (for the metric).
        manifolds: field -> manifold; weights: field -> loss weight.
    """
    total = 0.0
    parts: dict[str, float] = {}
    for k, m in manifolds.items():
        diff = pred[k] - target[k]
        sq = m.inner(points[k], diff, diff).mean()
        parts[k] = float(sq.detach())
        total = total + weights.get(k, 1.0) * sq
    return LossOutput(total=total, parts=parts)


def discrete_loss(
    logits: torch.Tensor,
    x1: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    path,
    kind: str = "ce",
) -> torch.Tensor:
    """Discrete flow-matching loss of posterior logits for one categorical field (a scalar).

    ``ce``: cross-entropy ``-log p_{1|t}(x1 | x_t)`` averaged over tokens (for the masked source,
    over masked tokens only: unmasked tokens already equal ``x1``).
    ``gkl``: the generalized KL between the conditional and the model rates of a mixture path
    (Shaul et al. 2024), per token ``lambda_t [(1 - d) (-log p(x1 | x_t)) + d - p(x_t | x_t)]``
    with ``lambda_t = kappa'_t / (1 - kappa_t)`` and ``d = [x_t == x1]``; non-negative and zero
    iff the rates agree.

    Args:
        logits: ``[M, V]`` raw logits of the posterior over the ``V`` values.
        x1: ``[M]`` data tokens; x_t: ``[M]`` path tokens; t: ``[M]`` times.
        path: the :class:`~crystalflow.paths.discrete.MixturePath` (allowed values, scheduler).
        kind: ``ce`` or ``gkl``.
    """
    logp = torch.log_softmax(path.masked_logits(logits), dim=-1)
    logp_x1 = logp.gather(1, x1[:, None]).squeeze(1)
    if kind == "ce":
        if path.masked:
            keep = (x_t == path.source.mask_index).to(logits.dtype)
            return -(logp_x1 * keep).sum() / keep.sum().clamp_min(1.0)
        return -logp_x1.mean()
    if kind == "gkl":
        lam = path.rate_scale(t, max_rate=100.0).to(logits.dtype)
        same = (x_t == x1).to(logits.dtype)
        p_xt = logp.gather(1, x_t[:, None]).squeeze(1).exp()
        return (lam * ((1 - same) * (-logp_x1) + same - p_xt)).mean()
    raise ValueError(f"unknown discrete loss {kind!r}; use ce or gkl")


def weighted_total(parts: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> LossOutput:
    """``LossOutput`` from differentiable per-field losses: ``total = sum_f w_f part_f``."""
    total = 0.0
    out: dict[str, float] = {}
    for k, v in parts.items():
        out[k] = float(v.detach())
        total = total + weights.get(k, 1.0) * v
    return LossOutput(total=total, parts=out)
