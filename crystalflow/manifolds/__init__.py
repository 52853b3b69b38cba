"""Manifolds the fields live on, behind one small interface."""

from crystalflow.manifolds.base import Manifold
from crystalflow.manifolds.euclidean import Euclidean, FlatTorus
from crystalflow.manifolds.lattice import (
    NIGGLI_ANGLE_WINDOW,
    OPEN_ANGLE_WINDOW,
    LatticeChart,
    params_to_unconstrained,
    unconstrained_to_params,
)

__all__ = [
    "Euclidean", "FlatTorus", "LatticeChart", "Manifold", "NIGGLI_ANGLE_WINDOW", "OPEN_ANGLE_WINDOW",
    "params_to_unconstrained",
    "unconstrained_to_params",
]
