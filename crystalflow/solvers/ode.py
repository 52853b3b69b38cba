"""Fixed-step ODE solvers on products of manifolds (Euler, midpoint, RK4), batched.

The state is a dict of tensors keyed by field name, each field on its own manifold; a velocity
function maps ``(state, t)`` to tangent vectors of every field. Steps use the exponential map, so
every intermediate point stays on its manifold (fractional coordinates stay wrapped in [0, 1)).
Tangent vectors at different points are combined directly (RK4's stages), which is exact on the
flat manifolds and the first-order Lie-group scheme on SO(3).
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch

from crystalflow.manifolds.base import Manifold

State = dict[str, torch.Tensor]
VelocityFn = Callable[[State, torch.Tensor], State]

#: network evaluations per step of each method
STAGES = {"euler": 1, "midpoint": 2, "rk4": 4}


def nfe(method: str, steps: int) -> int:
    """Number of function (network) evaluations of ``steps`` steps of ``method``."""
    return STAGES[_check_method(method)] * steps


def _check_method(method: str) -> str:
    if method not in STAGES:
        raise ValueError(f"unknown solver {method!r}; choose from {sorted(STAGES)}")
    return method


def anti_annealed(velocity: VelocityFn, slopes: Mapping[str, float]) -> VelocityFn:
    """FlowMM's inference anti-annealing: scale field f's velocity by ``1 + s_f t``.

    It makes the flow commit to a mode faster late in the integration; ``slopes`` maps field
    names to ``s_f`` (fields not named are unchanged).
    """
    def wrapped(x: State, t: torch.Tensor) -> State:
        v = velocity(x, t)
        return {k: (u * (1.0 + slopes[k] * t) if slopes.get(k) else u) for k, u in v.items()}

    return wrapped


def _step(manifolds: Mapping[str, Manifold], x: State, v: State, h: float | torch.Tensor) -> State:
    return {k: manifolds[k].expmap(x[k], h * v[k]) for k in x}


def _combine(vs: list[State], ws: list[float]) -> State:
    return {k: sum(w * v[k] for v, w in zip(vs, ws)) for k in vs[0]}


def integrate(
    velocity: VelocityFn,
    x0: State,
    manifolds: Mapping[str, Manifold],
    steps: int,
    method: str = "euler",
    t0: float = 0.0,
    t1: float = 1.0,
    anti_annealing: Mapping[str, float] | None = None,
    callback: Callable[[State, float], None] | None = None,
) -> State:
    """Integrate ``dx/dt = velocity(x, t)`` from ``t0`` to ``t1`` in ``steps`` equal steps.

    Args:
        velocity: ``(state, t) -> velocities``; ``t`` is a 0-dim tensor.
        x0: field -> ``[M_f, *point]`` initial points.
        manifolds: field -> manifold of that field.
        steps: number of steps (network evaluations: ``nfe(method, steps)``).
        method: ``euler``, ``midpoint`` or ``rk4``.
        anti_annealing: optional field -> slope (see :func:`anti_annealed`).
        callback: called as ``callback(state, t)`` after every step (e.g. progress, checks).

    Returns:
        field -> points at ``t1``.
    """
    _check_method(method)
    if steps < 1:
        raise ValueError("steps must be >= 1")
    if anti_annealing:
        velocity = anti_annealed(velocity, anti_annealing)
    ref = next(iter(x0.values()))
    h = (t1 - t0) / steps
    x = dict(x0)
    for i in range(steps):
        t = torch.tensor(t0 + i * h, dtype=ref.dtype, device=ref.device)
        if method == "euler":
            x = _step(manifolds, x, velocity(x, t), h)
        elif method == "midpoint":
            k1 = velocity(x, t)
            k2 = velocity(_step(manifolds, x, k1, h / 2), t + h / 2)
            x = _step(manifolds, x, k2, h)
        else:
            k1 = velocity(x, t)
            k2 = velocity(_step(manifolds, x, k1, h / 2), t + h / 2)
            k3 = velocity(_step(manifolds, x, k2, h / 2), t + h / 2)
            k4 = velocity(_step(manifolds, x, k3, h), t + h)
            x = _step(manifolds, x, _combine([k1, k2, k3, k4], [1 / 6, 1 / 3, 1 / 3, 1 / 6]), h)
        if callback is not None:
            callback(x, float(t) + h)
    return x
