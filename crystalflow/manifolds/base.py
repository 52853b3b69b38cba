"""The manifold interface: a small set of pure operations, batched over leading dimensions.

Tangent vectors are represented in coordinates chosen by each manifold (ambient for flat spaces,
the Lie algebra for groups), so a geodesic's velocity is the constant ``logmap(x0, x1)`` and the
solvers need no parallel transport on the flat and group manifolds used here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Manifold(ABC):
    """A Riemannian manifold with exponential and logarithmic maps.

    Shapes: points ``[..., *point_shape]``, tangent vectors ``[..., *tangent_shape]``; every
    operation is elementwise over the leading dimensions.
    """

    #: shape of one point, e.g. ``(3,)``
    point_shape: tuple[int, ...] = ()
    #: shape of one tangent vector in this manifold's coordinates
    tangent_shape: tuple[int, ...] = ()

    @abstractmethod
    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Follow the geodesic from ``x`` with initial velocity ``u`` for unit time."""

    @abstractmethod
    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The tangent vector at ``x`` whose exponential reaches ``y`` (shortest geodesic)."""

    @abstractmethod
    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Project an ambient point onto the manifold (idempotent)."""

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Project an ambient vector onto the tangent space at ``x`` (idempotent)."""
        return u

    def inner(self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Riemannian inner product ``[...]`` of two tangent vectors at ``x``."""
        dims = tuple(range(-len(self.tangent_shape), 0))
        return (u * v).sum(dim=dims)

    def dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Geodesic distance ``[...]``."""
        u = self.logmap(x, y)
        return self.inner(x, u, u).clamp_min(0).sqrt()

    def geodesic(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Point at time ``t`` (broadcastable ``[..., 1...]``) on the geodesic from x0 to x1."""
        return self.expmap(x0, t * self.logmap(x0, x1))

    def check_point(self, x: torch.Tensor, atol: float = 1e-6) -> tuple[bool, str | None]:
        """``(ok, reason)``: is ``x`` on the manifold?"""
        if x.shape[len(x.shape) - len(self.point_shape):] != self.point_shape:
            return False, f"point shape {tuple(x.shape)} does not end in {self.point_shape}"
        if not torch.isfinite(x).all():
            return False, "non-finite coordinates"
        err = (self.projx(x) - x).abs().max().item() if x.numel() else 0.0
        return (err <= atol, None if err <= atol else f"projx moves the point by {err:.3g}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
