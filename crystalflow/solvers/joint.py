"""One solver loop for continuous fields (manifold Euler steps) and categorical fields
(discrete Euler steps) advanced together.

The state is a dict of tensors keyed by field name. ``field(state, t)`` returns a
:class:`JointField`: tangent velocities of the continuous fields and posterior probabilities of
the categorical ones, from *one* network evaluation. Each step moves every continuous field by
``expmap(x, h v)`` on its manifold, optionally projects the continuous state (e.g. symmetrisation
onto Wyckoff subspaces), and moves every categorical field by
:func:`~crystalflow.solvers.discrete.discrete_euler_step`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from crystalflow.manifolds.base import Manifold
from crystalflow.paths.discrete import MixturePath
from crystalflow.solvers.discrete import discrete_euler_step

__all__ = ["JointField", "integrate_joint"]

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class JointField:
    """What one network evaluation gives the joint solver.

    Attributes:
        velocities: continuous field -> ``[M_f, *tangent]`` velocity.
        posteriors: categorical field -> ``[M_f, V_f]`` probabilities of the data value.
    """

    velocities: dict[str, torch.Tensor]
    posteriors: dict[str, torch.Tensor]


def integrate_joint(
    field: Callable[[State, float], JointField],
    x0: State,
    manifolds: Mapping[str, Manifold],
    paths: Mapping[str, MixturePath],
    steps: int,
    *,
    generator: torch.Generator | None = None,
    project: Callable[[State], State] | None = None,
    callback: Callable[[State, float], None] | None = None,
) -> State:
    """Integrate from t = 0 to t = 1 in ``steps`` equal Euler steps.

    Args:
        field: ``(state, t) -> JointField`` (``t`` a float).
        x0: initial state; keys of ``manifolds`` are continuous, keys of ``paths`` categorical
            (``[M_f]`` long tokens).
        manifolds: continuous field -> manifold; paths: categorical field -> mixture path.
        steps: number of steps (= network evaluations).
        generator: random generator of the discrete jumps.
        project: optional map applied to the continuous fields after each step.
        callback: ``callback(state, t)`` after every step.

    Returns:
        The state at t = 1.
    """
    if steps < 1:
        raise ValueError("steps must be >= 1")
    unknown = set(x0) - set(manifolds) - set(paths)
    if unknown:
        raise ValueError(f"fields {sorted(unknown)} have neither a manifold nor a discrete path")
    h = 1.0 / steps
    x = dict(x0)
    for i in range(steps):
        t = i * h
        f = field(x, t)
        new = {k: manifolds[k].expmap(x[k], h * f.velocities[k]) for k in manifolds}
        if project is not None and new:
            new = project(new)
        for k, path in paths.items():
            new[k] = discrete_euler_step(x[k], f.posteriors[k], path, t, h, generator)
        x = new
        if callback is not None:
            callback(x, t + h)
    return x
