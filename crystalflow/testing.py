"""Test helpers shipped with the package (e3nn-style): manifold contract cases and invariance
checks that any new manifold or network can reuse in its own tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from crystalflow.manifolds import Euclidean, FlatTorus, Manifold


@dataclass(frozen=True)
class ManifoldCase:
    """A manifold with samplers of random points and tangent vectors (float64)."""

    name: str
    manifold: Manifold
    sample: Callable[[int, torch.Generator], torch.Tensor]

    def random_point(self, n: int, g: torch.Generator) -> torch.Tensor:
        return self.manifold.projx(self.sample(n, g))

    def tangent_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        lead = x.shape[: x.ndim - len(self.manifold.point_shape)]
        return tuple(lead) + tuple(self.manifold.tangent_shape)

    def random_tangent(self, x: torch.Tensor, g: torch.Generator, scale: float = 1.0) -> torch.Tensor:
        u = scale * torch.randn(self.tangent_shape(x), generator=g, dtype=x.dtype)
        return self.manifold.proju(x, u)


def manifold_cases() -> list[ManifoldCase]:
    """Every manifold of the package, for the shared contract tests."""
    cases = [
        ManifoldCase("torus3", FlatTorus(3), lambda n, g: torch.rand(n, 3, generator=g, dtype=torch.float64)),
        ManifoldCase("torus_period2", FlatTorus(2, period=2.0),
                     lambda n, g: 2 * torch.rand(n, 2, generator=g, dtype=torch.float64)),
        ManifoldCase("euclidean6", Euclidean(6), lambda n, g: torch.randn(n, 6, generator=g, dtype=torch.float64)),
    ]
    try:  # the protein manifolds register themselves when present
        from crystalflow.manifolds.so3 import manifold_cases as so3_cases
    except ImportError:
        return cases
    return cases + list(so3_cases())


def assert_allclose(a: torch.Tensor, b: torch.Tensor, atol: float, what: str) -> None:
    """Raise AssertionError naming ``what`` and the largest deviation."""
    err = (a - b).abs().max().item() if a.numel() else 0.0
    if not err <= atol:
        raise AssertionError(f"{what}: max deviation {err:.3g} > {atol:.1g}")
