"""The rotation group SO(3) as a manifold, with a uniform prior, and its contract cases.

Points are rotation matrices ``[..., 3, 3]``; tangent vectors are body-frame (Lie-algebra)
axis-angle vectors ``[..., 3]``, so ``expmap(R, u) = R @ Exp(u)`` and ``logmap(R, S) = Log(R^T S)``
and a geodesic's velocity in these coordinates is the constant ``logmap(x0, x1)``. With the
bi-invariant metric ``<u, v> = u . v`` the distance is the rotation angle of ``R^T S``, in
``[0, pi]``.

``Exp`` is Rodrigues' formula with Taylor expansions near zero (differentiable everywhere);
``Log`` goes through a unit quaternion (Shepperd's method) and ``2 atan2(|v|, w)``, which is
well conditioned for every angle, including angles close to ``pi`` where ``acos`` of the trace is
not. SE(3) is not a separate class: the protein flow treats a frame as the product of the fields
``rots`` (on :class:`SO3`) and ``trans`` (on :class:`~crystalflow.manifolds.Euclidean`), sampled
by a :class:`~crystalflow.paths.ProductPath`.
"""

from __future__ import annotations

import torch

from crystalflow.manifolds.base import Manifold

#: below this angle (radians) Exp and Log use their Taylor expansions
_SMALL = 1e-4


def hat(v: torch.Tensor) -> torch.Tensor:
    """``[..., 3] -> [..., 3, 3]`` the skew matrix ``[v]_x`` with ``[v]_x w = v x w``."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(v.shape[:-1] + (3, 3))


def vee(m: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 3] -> [..., 3]`` inverse of :func:`hat` on the skew part of ``m``."""
    return 0.5 * torch.stack(
        [m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], dim=-1
    )


def so3_exp(v: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: axis-angle ``[..., 3]`` -> rotation matrix ``[..., 3, 3]``."""
    theta2 = (v * v).sum(-1)
    small = theta2 < _SMALL**2
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2_safe.sqrt()
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2_safe)
    k = hat(v)
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand(k.shape)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def matrix_to_quaternion(r: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` -> unit quaternions ``[..., 4]`` (w, x, y, z), ``w >= 0``.

    Shepperd's method: each of the four candidate formulas divides by the largest of
    ``|w|, |x|, |y|, |z|``, so the result is accurate for every rotation.
    """
    m = r
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cands = torch.stack([
        torch.stack([1 + tr, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                     m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + 2 * m[..., 0, 0] - tr,
                     m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0],
                     1 + 2 * m[..., 1, 1] - tr, m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0],
                     m[..., 1, 2] + m[..., 2, 1], 1 + 2 * m[..., 2, 2] - tr], -1),
    ], dim=-2)  # [..., 4 candidates, 4]; candidate i is 4 q_i q
    diag = torch.stack([1 + tr, 1 + 2 * m[..., 0, 0] - tr, 1 + 2 * m[..., 1, 1] - tr,
                        1 + 2 * m[..., 2, 2] - tr], -1)
    best = diag.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(best.shape + (1, 4))).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Quaternions ``[..., 4]`` (w, x, y, z; normalised here) -> rotation matrices ``[..., 3, 3]``."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(q.shape[:-1] + (3, 3))


def axis_angle_to_quaternion(v: torch.Tensor) -> torch.Tensor:
    """Axis-angle ``[..., 3]`` -> unit quaternion ``[..., 4]`` (w, x, y, z); differentiable at 0."""
    theta2 = (v * v).sum(-1)
    small = theta2 < _SMALL**2
    theta = torch.where(small, torch.ones_like(theta2), theta2).sqrt()
    half_sinc = torch.where(small, 0.5 - theta2 / 48, torch.sin(theta / 2) / theta)
    w = torch.where(small, 1 - theta2 / 8, torch.cos(theta / 2))
    return torch.cat([w[..., None], half_sinc[..., None] * v], dim=-1)


def quaternion_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a b`` of quaternions ``[..., 4]`` (w, x, y, z): rotation ``a`` after ``b``
    in the matrix sense ``R(a b) = R(a) R(b)``."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def quaternion_log(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternion ``[..., 4]`` (either sign) -> axis-angle ``[..., 3]`` with angle in ``[0, pi]``.

    ``angle = 2 atan2(|v|, |w|)``; differentiable, with a Taylor branch near the identity.
    """
    q = torch.where(q[..., :1] < 0, -q, q)
    w, v = q[..., 0], q[..., 1:]
    s = v.norm(dim=-1)
    small = s < _SMALL
    s_safe = torch.where(small, torch.ones_like(s), s)
    # angle / sin(angle / 2) = 2 atan2(s, w) / s; near s = 0 (w ~ 1): 2 / w - (2/3) s^2 / w^3
    w_safe = torch.where(small, w.clamp_min(0.5), torch.ones_like(w))
    scale = torch.where(small, 2 / w_safe - (2.0 / 3.0) * s * s / w_safe**3, 2 * torch.atan2(s, w) / s_safe)
    return scale[..., None] * v


def so3_log(r: torch.Tensor) -> torch.Tensor:
    """Rotation matrix ``[..., 3, 3]`` -> axis-angle ``[..., 3]`` with angle in ``[0, pi]``."""
    return quaternion_log(matrix_to_quaternion(r))


def random_rotations(shape: tuple[int, ...], generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                     ) -> torch.Tensor:
    """Haar-uniform rotations ``[*shape, 3, 3]`` (normalised Gaussian quaternions)."""
    q = torch.randn(tuple(shape) + (4,), generator=generator, dtype=dtype, device=device)
    return quaternion_to_matrix(q)


def project_to_rotation(m: torch.Tensor) -> torch.Tensor:
    """Nearest rotation (Frobenius) to ``m [..., 3, 3]`` by SVD with the determinant fixed."""
    u, _, vh = torch.linalg.svd(m)
    d = torch.det(u @ vh)
    fix = torch.ones(m.shape[:-1], dtype=m.dtype, device=m.device)
    fix[..., 2] = d
    return u @ (fix[..., None] * vh)


class SO3(Manifold):
    """SO(3) with the bi-invariant metric; body-frame axis-angle tangent coordinates."""

    point_shape = (3, 3)
    tangent_shape = (3,)

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return x @ so3_exp(u)

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return so3_log(x.transpose(-1, -2) @ y)

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        return project_to_rotation(x)

    def random_uniform(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
                       dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                       ) -> torch.Tensor:
        """The uniform (Haar) prior: ``[*shape, 3, 3]``."""
        return random_rotations(shape, generator, dtype, device)

    def __repr__(self) -> str:
        return "SO3()"
