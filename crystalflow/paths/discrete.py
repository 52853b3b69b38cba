"""Discrete (categorical) probability paths: mixture paths from a masked or a uniform source.

A categorical field has values in ``{0, ..., V-1}``. The conditional *mixture path* (Gat et al.
2024, "Discrete Flow Matching") moves every token independently from a source value ``x0`` to the
data value ``x1``:

    p_t(x | x0, x1) = (1 - kappa_t) delta_{x0}(x) + kappa_t delta_{x1}(x),   kappa_0 = 0, kappa_1 = 1.

Sources: :class:`MaskSource` (``x0`` is a dedicated mask token) and :class:`UniformSource`
(``x0`` uniform over the allowed values). A rate that generates the conditional path is
``u_t(y | x) = kappa'_t / (1 - kappa_t) (delta_{x1}(y) - delta_x(y))``; marginalising over the
posterior ``p_{1|t}(x1 | x_t)`` (what the network predicts) gives the marginal rate
``u_t(y | x) = kappa'_t / (1 - kappa_t) (p_{1|t}(y | x) - delta_x(y))`` used by the sampler
(:mod:`crystalflow.solvers.discrete`).

Schedulers ``kappa_t``: :class:`LinearScheduler` (``t``), :class:`PolynomialScheduler` (``t^n``),
:class:`CosineScheduler` (``1 - cos(pi t / 2)``) and :class:`KineticOptimalScheduler`. The last
follows Shaul et al. 2024 (arXiv 2412.03487): the kinetic-optimal probability path between two
distributions is the great-circle arc between ``sqrt(p0)`` and ``sqrt(p1)`` on the unit sphere.
For ``p1 = delta_{x1}`` and any source with mass ``s = p0(x1)`` on the data value, that arc is a
mixture path with

    kappa_t = 1 - sin^2((1 - t) Omega) / sin^2(Omega),   cos(Omega) = sqrt(s),

which for the masked source (``s = 0``, ``Omega = pi / 2``) is ``kappa_t = sin^2(pi t / 2)`` and
for the uniform source over ``V`` values uses ``s = 1 / V``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

__all__ = [
    "Scheduler", "LinearScheduler", "PolynomialScheduler", "CosineScheduler",
    "KineticOptimalScheduler", "MaskSource", "UniformSource", "MixturePath", "DiscretePathSample",
    "make_scheduler", "SCHEDULERS",
]


class Scheduler(Protocol):
    """``kappa(t)`` and its derivative, both ``[M] -> [M]``, increasing from 0 to 1 on [0, 1]."""

    def kappa(self, t: torch.Tensor) -> torch.Tensor: ...

    def dkappa(self, t: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class LinearScheduler:
    """``kappa_t = t``."""

    def kappa(self, t: torch.Tensor) -> torch.Tensor:
        return t.clone()

    def dkappa(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(t)


@dataclass(frozen=True)
class PolynomialScheduler:
    """``kappa_t = t^n``."""

    exponent: float = 2.0

    def kappa(self, t: torch.Tensor) -> torch.Tensor:
        return t ** self.exponent

    def dkappa(self, t: torch.Tensor) -> torch.Tensor:
        return self.exponent * t ** (self.exponent - 1)


@dataclass(frozen=True)
class CosineScheduler:
    """``kappa_t = 1 - cos(pi t / 2)``."""

    def kappa(self, t: torch.Tensor) -> torch.Tensor:
        return 1 - torch.cos(0.5 * math.pi * t)

    def dkappa(self, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * math.pi * torch.sin(0.5 * math.pi * t)


@dataclass(frozen=True)
class KineticOptimalScheduler:
    """Kinetic-optimal mixture scheduler for a source with mass ``source_mass`` on the data value.

    ``kappa_t = 1 - sin^2((1 - t) Omega) / sin^2(Omega)`` with ``cos Omega = sqrt(source_mass)``
    (``source_mass = 0`` for the masked source: ``kappa_t = sin^2(pi t / 2)``).
    """

    source_mass: float = 0.0

    @property
    def omega(self) -> float:
        return math.acos(math.sqrt(min(max(self.source_mass, 0.0), 1.0 - 1e-12)))

    def kappa(self, t: torch.Tensor) -> torch.Tensor:
        w = self.omega
        return 1 - torch.sin((1 - t) * w) ** 2 / math.sin(w) ** 2

    def dkappa(self, t: torch.Tensor) -> torch.Tensor:
        w = self.omega
        return w * torch.sin(2 * (1 - t) * w) / math.sin(w) ** 2


#: scheduler names accepted by :func:`make_scheduler`
SCHEDULERS = ("linear", "polynomial", "cosine", "kinetic_optimal")


@dataclass(frozen=True)
class MaskSource:
    """Every token starts as the mask token ``mask_index`` (not a data value)."""

    mask_index: int = 0

    def sample(self, shape: tuple[int, ...], allowed: torch.Tensor, generator=None) -> torch.Tensor:
        """``shape`` long tensor filled with the mask token (``allowed``: ``[V]`` bool, for the device)."""
        return torch.full(shape, self.mask_index, dtype=torch.long, device=allowed.device)

    def mass_on_data(self, allowed: torch.Tensor) -> float:
        """``p0(x1)`` for a data value ``x1``: zero."""
        return 0.0


@dataclass(frozen=True)
class UniformSource:
    """Tokens start uniform over the allowed values."""

    def sample(self, shape: tuple[int, ...], allowed: torch.Tensor, generator=None) -> torch.Tensor:
        """``shape`` long tensor of values drawn uniformly from ``allowed`` (``[V]`` bool)."""
        values = allowed.nonzero().squeeze(-1)
        n = int(torch.tensor(shape).prod()) if shape else 1
        idx = torch.randint(0, values.shape[0], (n,), generator=generator, device=allowed.device)
        return values[idx].reshape(shape)

    def mass_on_data(self, allowed: torch.Tensor) -> float:
        """``p0(x1) = 1 / |allowed|``."""
        return 1.0 / float(allowed.sum())


def make_scheduler(name: str, source_mass: float = 0.0, exponent: float = 2.0) -> Scheduler:
    """A scheduler by name (``kinetic_optimal`` needs the source's mass on the data value)."""
    if name == "linear":
        return LinearScheduler()
    if name == "polynomial":
        return PolynomialScheduler(exponent)
    if name == "cosine":
        return CosineScheduler()
    if name == "kinetic_optimal":
        return KineticOptimalScheduler(source_mass)
    raise ValueError(f"unknown scheduler {name!r}; choose from {SCHEDULERS}")


@dataclass(frozen=True)
class DiscretePathSample:
    """A sample of a discrete conditional path.

    Attributes:
        x_t: ``[M]`` long tokens at time t; x0: ``[M]`` source tokens; x1: ``[M]`` data tokens;
        t: ``[M]`` times.
    """

    x_t: torch.Tensor
    x0: torch.Tensor
    x1: torch.Tensor
    t: torch.Tensor


class MixturePath:
    """Mixture path ``(1 - kappa_t) delta_{x0} + kappa_t delta_{x1}`` over ``V`` values.

    Args:
        source: :class:`MaskSource` or :class:`UniformSource`.
        scheduler: ``kappa_t`` (e.g. :func:`make_scheduler`).
        allowed: ``[V]`` bool, the values data and the uniform source may take (the mask token
            is never allowed).
    """

    def __init__(self, source: MaskSource | UniformSource, scheduler: Scheduler, allowed: torch.Tensor) -> None:
        self.source = source
        self.scheduler = scheduler
        self.allowed = allowed.bool()
        if isinstance(source, MaskSource) and bool(self.allowed[source.mask_index]):
            raise ValueError("the mask token must not be an allowed data value")

    @property
    def masked(self) -> bool:
        return isinstance(self.source, MaskSource)

    @property
    def num_values(self) -> int:
        return int(self.allowed.shape[0])

    def to(self, device: torch.device | str) -> "MixturePath":
        return MixturePath(self.source, self.scheduler, self.allowed.to(device))

    def sample_source(self, shape: tuple[int, ...], generator=None) -> torch.Tensor:
        """``x0`` tokens of the given shape."""
        return self.source.sample(shape, self.allowed, generator)

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, generator=None) -> DiscretePathSample:
        """``x_t``: each token is ``x1`` with probability ``kappa_t``, else ``x0``.

        Args:
            x0, x1: ``[M]`` long; t: ``[M]`` times in [0, 1].
        """
        kappa = self.scheduler.kappa(t.double()).clamp(0.0, 1.0)
        u = torch.rand(x1.shape, generator=generator, dtype=torch.float64, device=x1.device)
        x_t = torch.where(u < kappa, x1, x0)
        return DiscretePathSample(x_t=x_t, x0=x0, x1=x1, t=t)

    def rate_scale(self, t: torch.Tensor, max_rate: float = 1e4) -> torch.Tensor:
        """``kappa'_t / (1 - kappa_t)`` ``[M]`` (clipped: it diverges at t = 1)."""
        t = t.double()
        denom = (1 - self.scheduler.kappa(t)).clamp_min(1.0 / max_rate)
        return (self.scheduler.dkappa(t) / denom).clamp(max=max_rate)

    def jump_probability(self, t: torch.Tensor, h: float | torch.Tensor) -> torch.Tensor:
        """Probability that a conditional token jumps to ``x1`` during ``[t, t + h]``.

        ``(kappa_{t+h} - kappa_t) / (1 - kappa_t)``: the exact integral of the conditional rate
        over the step (``h kappa'_t / (1 - kappa_t)`` to first order), 1 on the last step.
        """
        t = t.double()
        k0 = self.scheduler.kappa(t)
        k1 = self.scheduler.kappa((t + h).clamp(max=1.0))
        out = (k1 - k0) / (1 - k0).clamp_min(1e-12)
        return torch.where(t + h >= 1.0 - 1e-9, torch.ones_like(out), out.clamp(0.0, 1.0))

    def masked_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits ``[M, V]`` with disallowed values (and the mask token) set to ``-inf``."""
        return logits.masked_fill(~self.allowed.to(logits.device), float("-inf"))

    def exact_posterior(self, x_t: torch.Tensor, t: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Exact ``p_{1|t}(. | x_t)`` ``[M, V]`` when data tokens are i.i.d. ``target`` ``[V]``.

        For tests and toy problems: ``p(x1 | x_t) ∝ target(x1) p_t(x_t | x1)`` with
        ``p_t(x | x1) = (1 - kappa) p0(x) + kappa delta_{x1}(x)``.
        """
        kappa = self.scheduler.kappa(t.double())[:, None]
        v = self.num_values
        target = target.double().to(x_t.device)
        if self.masked:
            p0 = (x_t == self.source.mask_index).double()[:, None].expand(-1, v)
        else:
            p0 = (self.allowed.double() / self.allowed.sum()).to(x_t.device)[x_t][:, None].expand(-1, v)
        onehot = torch.nn.functional.one_hot(x_t, v).double()
        like = (1 - kappa) * p0 + kappa * onehot
        post = target[None, :] * like
        return post / post.sum(-1, keepdim=True)
