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
