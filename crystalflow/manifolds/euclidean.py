"""Flat manifolds: Euclidean space and the flat torus of fractional coordinates."""

from __future__ import annotations

import torch

from crystalflow.manifolds.base import Manifold


class Euclidean(Manifold):
    """R^d; used for lattice parameters in their unconstrained, standardised chart."""

    def __init__(self, dim: int) -> None:
        self.point_shape = (dim,)
        self.tangent_shape = (dim,)

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return x + u

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y - x

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def __repr__(self) -> str:
        return f"Euclidean({self.point_shape[0]})"


class FlatTorus(Manifold):
    """The flat torus (R / period Z)^d with the wrapped Euclidean metric.

    Points are kept in ``[0, period)``; ``logmap`` returns the shortest displacement, each
    component in ``[-period/2, period/2)`` (fractional coordinates: ``period=1``).
    """

    def __init__(self, dim: int = 3, period: float = 1.0) -> None:
        self.point_shape = (dim,)
        self.tangent_shape = (dim,)
        self.period = float(period)

    def wrap(self, d: torch.Tensor) -> torch.Tensor:
        """Map displacements to ``[-period/2, period/2)``."""
        p = self.period
        return torch.remainder(d + 0.5 * p, p) - 0.5 * p

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.projx(x + u)

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.wrap(y - x)

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.remainder(x, self.period)
        # remainder of a tiny negative number can round to exactly `period`
        return torch.where(out >= self.period, out - self.period, out)

    def __repr__(self) -> str:
        return f"FlatTorus(dim={self.point_shape[0]}, period={self.period})"
