"""Manifolds the fields live on, behind one small interface."""

from crystalflow.manifolds.base import Manifold
from crystalflow.manifolds.euclidean import Euclidean, FlatTorus
from crystalflow.manifolds.lattice import LatticeChart, params_to_unconstrained, unconstrained_to_params

__all__ = [
    "Euclidean", "FlatTorus", "LatticeChart", "Manifold", "params_to_unconstrained",
    "unconstrained_to_params",
]
