"""Conditional geodesic probability paths and their product over named fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from crystalflow.manifolds.base import Manifold


@dataclass(frozen=True)
class PathSample:
    """A point on a conditional path and the path's velocity there.

    Attributes:
        x_t: ``[M, *point_shape]`` point at time t.
        dx_t: ``[M, *tangent_shape]`` target velocity d/dt x_t (in the manifold's tangent coords).
        t: ``[M]`` the time of each element.
    """

    x_t: torch.Tensor
    dx_t: torch.Tensor
    t: torch.Tensor


class GeodesicPath:
    """``x_t = exp_{x0}(kappa(t) log_{x0}(x1))`` with the linear schedule ``kappa(t) = t``.

    The velocity is ``log_{x0}(x1)`` expressed at ``x_t``; for the flat and Lie-group manifolds of
    this package (tangent vectors in translation-/left-invariant coordinates) it is the same vector.
    """

    def __init__(self, manifold: Manifold) -> None:
        self.manifold = manifold

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> PathSample:
        """Sample the path.

        Args:
            x0: ``[M, *point_shape]`` prior samples; x1: ``[M, *point_shape]`` data.
            t: ``[M]`` times in [0, 1].
        """
        u = self.manifold.logmap(x0, x1)
        tt = t.reshape(t.shape + (1,) * (u.ndim - 1)).to(u)
        x_t = self.manifold.expmap(x0, tt * u)
        return PathSample(x_t=x_t, dx_t=u, t=t)


class ProductPath:
    """One path per named field (``frac``, ``lattice``, ...), sampled together.

    Each field gets its time from a per-element time tensor given by the caller (atoms of one
    crystal share their crystal's time).
    """

    def __init__(self, paths: Mapping[str, GeodesicPath]) -> None:
        self.paths = dict(paths)

    def sample(
        self, x0: Mapping[str, torch.Tensor], x1: Mapping[str, torch.Tensor],
        t: Mapping[str, torch.Tensor],
    ) -> dict[str, PathSample]:
        """Sample every field; ``x0``, ``x1``, ``t`` are keyed by field name."""
        return {k: p.sample(x0[k], x1[k], t[k]) for k, p in self.paths.items()}
