"""Test helpers shipped with the package (e3nn-style): manifold contract cases and invariance
checks that any new manifold or network can reuse in its own tests: rotation, permutation and
unit-cell change of crystal fields, and equivariance / invariance under each crystal's space
group (:func:`assert_group_equivariant`, :func:`assert_group_invariant`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from crystalflow.manifolds import Euclidean, FlatTorus, Manifold
from crystalflow.manifolds.so3 import SO3, random_rotations, so3_exp


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


def so3_cases() -> list[ManifoldCase]:
    """SO(3) contract cases: ``so3`` (Haar-uniform points, so relative angles near ``pi`` occur)
    and ``so3_near_identity`` (points within 0.1 rad of the identity, exercising the small-angle
    branches of Exp and Log)."""

    def near_identity(n: int, g: torch.Generator) -> torch.Tensor:
        return so3_exp(0.05 * torch.randn(n, 3, generator=g, dtype=torch.float64))

    return [
        ManifoldCase("so3", SO3(), lambda n, g: random_rotations((n,), g, torch.float64)),
        ManifoldCase("so3_near_identity", SO3(), near_identity),
    ]


def manifold_cases() -> list[ManifoldCase]:
    """Every manifold of the package, for the shared contract tests."""
    cases = [
        ManifoldCase("torus3", FlatTorus(3), lambda n, g: torch.rand(n, 3, generator=g, dtype=torch.float64)),
        ManifoldCase("torus_period2", FlatTorus(2, period=2.0),
                     lambda n, g: 2 * torch.rand(n, 2, generator=g, dtype=torch.float64)),
        ManifoldCase("euclidean6", Euclidean(6), lambda n, g: torch.randn(n, 6, generator=g, dtype=torch.float64)),
    ]
    return cases + so3_cases()


def assert_allclose(a: torch.Tensor, b: torch.Tensor, atol: float, what: str) -> None:
    """Raise AssertionError naming ``what`` and the largest deviation."""
    err = (a - b).abs().max().item() if a.numel() else 0.0
    if not err <= atol:
        raise AssertionError(f"{what}: max deviation {err:.3g} > {atol:.1g}")


# ---------------------------------------------------------------------------------------------
# Equivariance of crystal vector fields (e3nn ``util/test.py`` style).
#
# A *crystal field* here is any callable ``f(frac [N, 3], lattice [B, 3, 3], perm_types [N])``
# returning a dict of tensors; batch layout (which atoms belong to which crystal) is fixed by the
# caller. Keys are checked by role: ``cart`` ([N, 3] Cartesian, rotates with the frame), ``frac``
# ([N, 3] fractional velocity) and any other per-crystal outputs (e.g. ``lattice`` [B, 6]).
# ---------------------------------------------------------------------------------------------

CrystalField = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], dict]


class default_dtype:  # noqa: N801 - a context manager used like a function
    """``with default_dtype(torch.float64): ...`` (e3nn builds its constants in the default dtype)."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype, self.saved = dtype, None

    def __enter__(self) -> None:
        self.saved = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)

    def __exit__(self, *exc) -> None:
        torch.set_default_dtype(self.saved)


def random_rotation(generator: torch.Generator, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A uniformly random proper rotation ``[3, 3]`` (QR of a Gaussian matrix, sign-fixed)."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))[None]
    if torch.det(q) < 0:
        q = q[:, [1, 0, 2]]
    return q.to(dtype)


def random_unimodular(generator: torch.Generator, dtype: torch.dtype = torch.float64,
                      shears: int = 3) -> torch.Tensor:
    """A random integer ``[3, 3]`` matrix with determinant +-1: a reordering of the axes (possibly
    with sign flips) composed with ``shears`` elementary shears ``a_i += +-a_j``. ``M @ L`` is
    another unit cell of the same lattice (same volume, no supercell)."""
    m = torch.eye(3, dtype=torch.float64)[torch.randperm(3, generator=generator)]
    m = m * (2 * torch.randint(0, 2, (3, 1), generator=generator) - 1)
    for _ in range(shears):
        i, j = torch.randperm(3, generator=generator)[:2].tolist()
        e = torch.eye(3, dtype=torch.float64)
        e[i, j] = float(2 * torch.randint(0, 2, (), generator=generator) - 1)
        m = e @ m
    return m.to(dtype)


def assert_rotation_equivariant(f: CrystalField, frac: torch.Tensor, lattice: torch.Tensor,
                                types: torch.Tensor, rotation: torch.Tensor, atol: float) -> None:
    """Rotating the Cartesian frame (``L -> L R^T``, same fractional coordinates) rotates
    ``cart`` (``v -> v R^T``) and leaves every other output (fractional, per-crystal) unchanged."""
    out = f(frac, lattice, types)
    rot = f(frac, lattice @ rotation.T, types)
    for key, value in out.items():
        want = value @ rotation.T if key == "cart" else value
        assert_allclose(rot[key], want, atol, f"rotation: {key}")


def assert_permutation_equivariant(f: CrystalField, frac: torch.Tensor, lattice: torch.Tensor,
                                   types: torch.Tensor, perm: torch.Tensor, atol: float,
                                   per_atom: tuple[str, ...] = ("cart", "frac")) -> None:
    """Permuting atoms (``perm`` must keep each atom in its crystal) permutes per-atom outputs and
    leaves per-crystal outputs unchanged."""
    out = f(frac, lattice, types)
    per = f(frac[perm], lattice, types[perm])
    for key, value in out.items():
        want = value[perm] if key in per_atom else value
        assert_allclose(per[key], want, atol, f"permutation: {key}")


def assert_lattice_change_equivariant(f: CrystalField, frac: torch.Tensor, lattice: torch.Tensor,
                                      types: torch.Tensor, batch: torch.Tensor, change: torch.Tensor,
                                      atol: float, invariant: tuple[str, ...] = ()) -> None:
    """Another unit cell of the same crystal, ``L' = M L`` and ``f' = f M^{-1}`` (``change`` is
    ``M`` ``[B, 3, 3]``, integer, det +-1), gives the identical Cartesian field, the fractional
    field transformed as ``v' = v M^{-1}``, and the same values of the keys in ``invariant``."""
    minv = torch.linalg.inv(change)
    out = f(frac, lattice, types)
    new_frac = torch.einsum("nk,nkl->nl", frac, minv[batch])
    alt = f(new_frac, change @ lattice, types)
    if "cart" in out:
        assert_allclose(alt["cart"], out["cart"], atol, "lattice change: cart")
    if "frac" in out:
        want = torch.einsum("nk,nkl->nl", out["frac"], minv[batch])
        assert_allclose(alt["frac"], want, atol, "lattice change: frac")
    for key in invariant:
        assert_allclose(alt[key], out[key], atol, f"lattice change: {key}")


# ---------------------------------------------------------------------------------------------
# Space-group equivariance of per-atom fields at a symmetric configuration.
#
# At a crystal with space group G, every operation g = (R_g, t_g) maps the atoms onto themselves
# with a permutation sigma_g; the entries of a SymmetryBatch list (i, sigma_g(i), g) for every
# crystal, operation and atom (``entry_dst``, ``entry_src``, ``entry_op``).
# ---------------------------------------------------------------------------------------------


def assert_group_equivariant(v: torch.Tensor, sym, atol: float, what: str = "field") -> None:
    """Assert that a per-atom vector field is equivariant under every crystal's space group:
    ``v[sigma_g(i)] == R_g v[i]`` for every crystal, operation ``g`` and atom ``i``.

    Args:
        v: ``[N, 3]`` (or ``[N, C, 3]``) fractional components of the field at the atoms.
        sym: the batch's :class:`~crystalflow.symmetry.SymmetryBatch`.
        atol: tolerance relative to the field's size, ``atol * (1 + max |v|)``.
        what: names the field in the error.
    """
    rot = sym.op_rot.index_select(0, sym.entry_op).to(v.dtype)  # [E, 3, 3]
    moved = v.index_select(0, sym.entry_dst)
    rotated = torch.einsum("eij,e...j->e...i", rot, moved)
    scale = 1.0 + (float(v.abs().max()) if v.numel() else 0.0)
    assert_allclose(v.index_select(0, sym.entry_src), rotated, atol * scale, f"group equivariance: {what}")


def assert_group_invariant(s: torch.Tensor, sym, atol: float, what: str = "scalars") -> None:
    """Assert that per-atom scalars are invariant under every crystal's space group:
    ``s[sigma_g(i)] == s[i]`` (``s`` ``[N]`` or ``[N, C]``; tolerance ``atol * (1 + max |s|)``)."""
    scale = 1.0 + (float(s.abs().max()) if s.numel() else 0.0)
    assert_allclose(s.index_select(0, sym.entry_src), s.index_select(0, sym.entry_dst), atol * scale,
                    f"group invariance: {what}")
