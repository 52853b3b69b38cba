"""One fixed-step solver loop for every flow: ODEs on products of manifolds (Euler, midpoint, RK4),
optionally with a projection after each step and categorical fields advanced by discrete Euler
steps in the same loop.

The state is a dict of tensors keyed by field name, each continuous field on its own manifold; a
velocity function maps ``(state, t)`` to tangent vectors of every continuous field. Steps use the
exponential map, so every intermediate point stays on its manifold (fractional coordinates stay
wrapped in [0, 1)). Tangent vectors at different points are combined directly (RK4's stages),
which is exact on the flat manifolds and the first-order Lie-group scheme on SO(3).

Projection hook. ``project`` maps the continuous state onto a constrained set after every step
and every intermediate stage (space-group flows: atoms back onto their Wyckoff subspaces, lattice
onto its crystal-family constraints), against the float32 drift of a symmetric field.

Categorical fields (``discrete``: field -> mixture path). The velocity function then returns a
:class:`JointField` (velocities and posteriors from *one* network evaluation); each Euler step
moves the continuous fields, projects them, and moves every categorical field by
:func:`~crystalflow.solvers.discrete.discrete_euler_step`.

Time arithmetic. By default stage times and anti-annealing factors are computed in Python floats
(float64) and the time is handed to the velocity function as a 0-dim tensor of the state's
floating dtype; with ``time_dtype`` the time is a tensor of that dtype throughout (stage times and
factors rounded to it: the P1 CSP and protein flows sample in float32 this way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from crystalflow.manifolds.base import Manifold
from crystalflow.paths.discrete import MixturePath
from crystalflow.solvers.discrete import discrete_euler_step

__all__ = ["STAGES", "JointField", "anneal", "anti_annealed", "integrate", "nfe"]

State = dict[str, torch.Tensor]
VelocityFn = Callable[[State, torch.Tensor], State]
ProjectFn = Callable[[State], State]

#: network evaluations per step of each method
STAGES = {"euler": 1, "midpoint": 2, "rk4": 4}


@dataclass(frozen=True)
class JointField:
    """What one network evaluation gives a solver with categorical fields.

    Attributes:
        velocities: continuous field -> ``[M_f, *tangent]`` velocity.
        posteriors: categorical field -> ``[M_f, V_f]`` probabilities of the data value.
    """

    velocities: dict[str, torch.Tensor]
    posteriors: dict[str, torch.Tensor]


def nfe(method: str, steps: int) -> int:
    """Number of function (network) evaluations of ``steps`` steps of ``method``."""
    return STAGES[_check_method(method)] * steps


def _check_method(method: str) -> str:
    if method not in STAGES:
        raise ValueError(f"unknown solver {method!r}; choose from {sorted(STAGES)}")
    return method


def anneal(v: State, slopes: Mapping[str, float] | None, t: float | torch.Tensor) -> State:
    """FlowMM's inference anti-annealing: field f's velocity ``[M_f, ...]`` times ``1 + s_f t``.

    It makes the flow commit to a mode faster late in the integration; ``slopes`` maps field
    names to ``s_f`` (fields not named, or with slope 0, are unchanged).
    """
    if not slopes:
        return v
    return {k: (u * (1.0 + slopes[k] * t) if slopes.get(k) else u) for k, u in v.items()}


def anti_annealed(velocity: VelocityFn, slopes: Mapping[str, float]) -> VelocityFn:
    """``velocity`` with :func:`anneal` applied (for loops outside :func:`integrate`)."""
    def wrapped(x: State, t: torch.Tensor) -> State:
        return anneal(velocity(x, t), slopes, t)

    return wrapped


def _combine(vs: list[State], ws: list[float]) -> State:
    """``sum_i w_i v_i`` per field."""
    return {k: sum(w * v[k] for v, w in zip(vs, ws)) for k in vs[0]}


def _float_dtype(x0: State) -> torch.dtype:
    """The first floating dtype of the state (float64 when every field is categorical)."""
    return next((v.dtype for v in x0.values() if v.is_floating_point()), torch.float64)


def integrate(
    velocity: VelocityFn,
    x0: State,
    manifolds: Mapping[str, Manifold],
    steps: int,
    method: str = "euler",
    t0: float = 0.0,
    t1: float = 1.0,
    anti_annealing: Mapping[str, float] | None = None,
    callback: Callable[[State, float], State | None] | None = None,
    project: ProjectFn | None = None,
    discrete: Mapping[str, MixturePath] | None = None,
    generator: torch.Generator | None = None,
    time_dtype: torch.dtype | None = None,
) -> State:
    """Integrate ``dx/dt = velocity(x, t)`` from ``t0`` to ``t1`` in ``steps`` equal steps.

    Args:
        velocity: ``(state, t) -> velocities`` (a :class:`JointField` with ``discrete``); ``t`` is
            a 0-dim tensor.
        x0: field -> ``[M_f, *point]`` initial points (``[M_f]`` long tokens of categorical fields).
        manifolds: continuous field -> manifold of that field.
        steps: number of steps (network evaluations: ``nfe(method, steps)``).
        method: ``euler``, ``midpoint`` or ``rk4`` (``euler`` with categorical fields).
        anti_annealing: optional field -> slope (see :func:`anneal`).
        callback: called as ``callback(state, t)`` after every step (e.g. progress, checks).
            It may return a new state of the same fields, which replaces the current one (the
            steering hook: particle resampling, :mod:`crystalflow.crystal_tasks.steering`); ``None`` keeps it.
        project: optional map of the continuous state ``{field: [M_f, *point]}`` onto a
            constrained set, applied after every step and stage.
        discrete: categorical field -> mixture path, advanced by discrete Euler steps.
        generator: random generator of the discrete jumps.
        time_dtype: dtype of the time arithmetic (None: Python floats, see the module docstring).

    Returns:
        field -> points (tokens) at ``t1``.
    """
    _check_method(method)
    if steps < 1:
        raise ValueError("steps must be >= 1")
    discrete = dict(discrete or {})
    unknown = set(x0) - set(manifolds) - set(discrete)
    if unknown:
        raise ValueError(f"fields {sorted(unknown)} have neither a manifold nor a discrete path")
    if discrete and method != "euler":
        raise ValueError(f"categorical fields are advanced by Euler steps; got method {method!r}")
    ref = next(iter(x0.values()))
    dtype = _float_dtype(x0)

    def field(x: State, t: float | torch.Tensor) -> tuple[State, dict[str, torch.Tensor]]:
        tt = t if isinstance(t, torch.Tensor) else torch.tensor(t, dtype=dtype, device=ref.device)
        out = velocity(x, tt)
        v, post = (out.velocities, out.posteriors) if isinstance(out, JointField) else (out, {})
        return anneal(v, anti_annealing, t), post

    def advance(x: State, v: State, h: float) -> State:
        new = {k: manifolds[k].expmap(x[k], h * v[k]) for k in x if k in manifolds}
        return project(new) if project is not None and new else new

    h = (t1 - t0) / steps
    x = dict(x0)
    for i in range(steps):
        t = t0 + i * h
        if time_dtype is not None:
            t = torch.tensor(t, dtype=time_dtype, device=ref.device)
        k1, post = field(x, t)
        if method == "euler":
            new = advance(x, k1, h)
        elif method == "midpoint":
            new = advance(x, field(advance(x, k1, h / 2), t + h / 2)[0], h)
        else:
            k2 = field(advance(x, k1, h / 2), t + h / 2)[0]
            k3 = field(advance(x, k2, h / 2), t + h / 2)[0]
            k4 = field(advance(x, k3, h), t + h)[0]
            new = advance(x, _combine([k1, k2, k3, k4], [1 / 6, 1 / 3, 1 / 3, 1 / 6]), h)
        for k, path in discrete.items():
            new[k] = discrete_euler_step(x[k], post[k], path, t, h, generator)
        x = new
        if callback is not None:
            replaced = callback(x, float(t) + h)
            if replaced is not None:
                x = replaced
    return x
